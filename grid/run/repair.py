"""Repair of finished trials: recompute exactly the stored results that are missing or damaged.

Tune restores only unfinished and errored trials, so a finished trial whose committed batch
file was later deleted, truncated or changed (``er-grid status`` shows it DAMAGED, or
EVALUATING with batches missing) would never be evaluated again. ``er-grid resume`` therefore
runs, after Tune, one Ray task per such trial with the trial's own resources
(``grid.trial.trainable.repair_trial``): restore the newest checkpoint from the trial folder,
then the same stages as the trainable (``grid.stages.STAGES``: evaluation, detection, codes,
trial row, sanity). Each skips every committed intact file, so only the damaged or missing ones
are computed; each damaged file is moved aside
(``_moved_aside/``), never deleted, before its replacement is written and committed.
"""

from __future__ import annotations

from grid.common.locations import join, results_location
from grid.experiment import status, trials_to_repair
from grid.spec import TrialConfig

from .summary import RunSummary, summarize


def repair_finished_trials(path: str, results) -> RunSummary:
    """After ``Tuner.fit()`` on the experiment ``path``: repair each trial that Tune finished
    without error but whose stored results are incomplete; the summary covers both."""
    import ray

    # The trial side of a repair loads torch: imported when a repair runs, not with grid.run.
    from grid.trial.trainable import repair_trial

    configs = {}
    for result in results:
        if result.error is None and result.config:
            trial = TrialConfig.from_dict(result.config["trial"])
            configs[trial.trial_id] = (result.config["trial"], result.config["results"] or results_location(path))
    todo = [t for t in trials_to_repair(status(path)) if t in configs]
    errors = []
    if todo:
        tasks = {}
        for trial_id in todo:
            trial_dict, results_root = configs[trial_id]
            resources = trial_dict["resources"]
            task = ray.remote(repair_trial).options(num_cpus=resources["cpu"], num_gpus=resources["gpu"],
                                                    max_retries=0)
            name = TrialConfig.from_dict(trial_dict).name
            tasks[name] = task.remote(trial_dict, join(path, name), results_root)
        for name, ref in tasks.items():
            try:
                ray.get(ref)
            except Exception as err:  # a failed repair is reported like a failed trial  # noqa: BLE001
                message = str(getattr(err, "cause", None) or err).strip().splitlines()
                errors.append(f"{name}: repair failed: {message[-1] if message else type(err).__name__}")
    summary = summarize(path, results)
    return RunSummary(
        experiment_path=summary.experiment_path, trials=summary.trials,
        terminated=summary.terminated - len(errors), errored=summary.errored + len(errors),
        errors=summary.errors + tuple(errors),
    )


__all__ = ["repair_finished_trials"]
