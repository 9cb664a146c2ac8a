"""What ``run`` and ``resume`` report: where the experiment is and how its trials ended."""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class RunSummary:
    """What ``run``/``resume`` did: where the experiment is and how its trials ended."""

    experiment_path: str
    trials: int
    terminated: int
    errored: int
    errors: tuple  # "trial name: error message" per errored trial

    @property
    def ok(self) -> bool:
        return self.errored == 0 and self.terminated == self.trials


def summarize(path: str, results) -> RunSummary:
    """The summary of a ``ResultGrid`` (or any iterable of Tune results) of the experiment ``path``."""
    errors = tuple(
        f"{result.path.rsplit('/', 1)[-1]}: {str(result.error).strip().splitlines()[-1]}"
        for result in results if result.error is not None
    )
    return RunSummary(
        experiment_path=path, trials=len(results), terminated=len(results) - len(errors),
        errored=len(errors), errors=errors,
    )


__all__ = ["RunSummary", "summarize"]
