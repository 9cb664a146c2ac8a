"""What every post-training stage is given and what it must say about itself.

:class:`TrialBundle` is everything a stage needs of one trained trial, built once (by the
trainable after training, or by ``er-grid resume``'s repair from the newest checkpoint) and
frozen. :class:`Stage` is the contract of one stage: whether a trial wants it, the files it
commits for that trial (so ``er-grid status`` can tell whether it is done without running it),
and how to run it. Stages import torch only when they run, so the registry is torch-free.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from typing import Any, Callable, Optional


def _quiet(done: int, total: int) -> None:
    """No progress reports (a repair outside Tune)."""


@dataclasses.dataclass(frozen=True)
class TrialBundle:
    """One trained trial, as every stage sees it.

    ``method``: the er_core method with its trained weights (``method.model`` is evaluated);
    ``data``: the trial's ``er_core.data.Data``; ``checkpoint_hash``: the weights' hash every row
    carries; ``device``: where the model is; ``state``: the training record (finished epoch,
    per-epoch losses, training seconds) that the trial row keeps; ``started``: when the
    post-training work began (``time.perf_counter``), for the trial row's wall time;
    ``report_progress(done, total)``: evaluation batches done, for Tune's progress table;
    ``evaluated_epoch``: the epoch whose weights ``method.model`` holds (the best on validation
    where the trial asks for it), kept in the trial row.
    """

    trial: Any  # grid.spec.TrialConfig
    store: Any  # grid.store.ResultStore
    method: Any
    data: Any
    checkpoint_hash: str
    device: str
    state: Any  # grid.trial.checkpoints.TrainState
    evaluated_epoch: Optional[int] = None  # the epoch whose weights are evaluated (None: the last)
    started: float = dataclasses.field(default_factory=time.perf_counter)
    report_progress: Callable[[int, int], None] = _quiet

    @property
    def model(self):
        return self.method.model

    @functools.cached_property
    def batches(self) -> list:
        """The evaluation subset's batches of test indices, computed once per bundle."""
        return trial_batches(self.trial)


def trial_batches(trial) -> list:
    """``trial``'s evaluation subset cut into its batches of test indices (``er_core.eval_subset``)."""
    from er_core.eval_subset import eval_batches

    return eval_batches(trial.dataset, trial.eval_n, trial.eval_seed, trial.eval_batch_size)


class Stage:
    """One post-training stage. Subclasses set ``name`` and implement the three methods.

    ``derived_from``: the earlier stages whose committed files this stage's output is computed
    from (the sanity flags from the rows and the trial row): it is redone whenever one of them
    wrote anything.
    """

    name: str = ""
    derived_from: tuple[str, ...] = ()

    def wants(self, trial) -> bool:
        """Whether ``trial`` runs this stage (its spec may leave optional stages out)."""
        raise NotImplementedError

    def files(self, store, trial) -> list[str]:
        """The store paths this stage commits for ``trial`` when it is done."""
        raise NotImplementedError

    def run(self, bundle: TrialBundle, redo: bool = False) -> int:
        """Compute what of :meth:`files` is not committed and intact (all of it with ``redo``);
        returns the number of files written (0: nothing to do)."""
        raise NotImplementedError


class SingleFileStage(Stage):
    """A stage that commits one file per trial (:meth:`path`), skipped while that file is
    committed and intact; a missing or damaged one is recomputed (:meth:`compute`) and the store
    moves the damaged file aside before replacing it."""

    def path(self, store, trial) -> str:
        raise NotImplementedError

    def compute(self, bundle: TrialBundle) -> None:
        raise NotImplementedError

    def files(self, store, trial) -> list[str]:
        return [self.path(store, trial)]

    def run(self, bundle: TrialBundle, redo: bool = False) -> int:
        if not redo and bundle.store.is_committed_intact(self.path(bundle.store, bundle.trial)):
            return 0
        self.compute(bundle)
        return 1


__all__ = ["SingleFileStage", "Stage", "TrialBundle", "trial_batches"]
