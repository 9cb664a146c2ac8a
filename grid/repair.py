"""Repair of finished trials: recompute exactly the stored results that are missing or damaged.

Tune restores only unfinished and errored trials, so a finished trial whose committed batch
file was later deleted, truncated or changed (``er-grid status`` shows it DAMAGED, or
EVALUATING with batches missing) would never be evaluated again. ``er-grid resume`` therefore
runs, after Tune, one Ray task per such trial with the trial's own resources
(:func:`repair_trial`): restore the newest checkpoint from the trial folder, then the same
evaluation, detection and trial-row steps as the trainable. Those skip every committed intact
file, so only the damaged or missing ones are computed; each damaged file is moved aside
(``_moved_aside/``), never deleted, before its replacement is written and committed.
"""

from __future__ import annotations

import time

from grid.run import RunSummary, _filesystem, _join, _summary, results_location


def repair_finished_trials(path: str, results) -> RunSummary:
    """After ``Tuner.fit()`` on the experiment ``path``: repair each trial that Tune finished
    without error but whose stored results are incomplete; the summary covers both."""
    import ray

    from grid.spec import TrialConfig
    from grid.status import status, trials_to_repair

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
            tasks[name] = task.remote(trial_dict, _join(path, name), results_root)
        for name, ref in tasks.items():
            try:
                ray.get(ref)
            except Exception as err:  # a failed repair is reported like a failed trial  # noqa: BLE001
                message = str(getattr(err, "cause", None) or err).strip().splitlines()
                errors.append(f"{name}: repair failed: {message[-1] if message else type(err).__name__}")
    summary = _summary(path, results)
    return RunSummary(
        experiment_path=summary.experiment_path, trials=summary.trials,
        terminated=summary.terminated - len(errors), errored=summary.errored + len(errors),
        errors=summary.errors + tuple(errors),
    )


def repair_trial(trial_dict: dict, trial_path: str, results_root: str) -> int:
    """Evaluate a finished trial again from its newest checkpoint in ``trial_path``, computing
    only what the store lacks. Returns the number of evaluation batches recomputed."""
    import torch

    import er_core.methods
    from grid.spec import TrialConfig
    from grid.store import TRIALS_DIR, ResultStore
    from grid.checkpoints import restore_latest, stored_checkpoints, weights_hash
    from grid.trainable import evaluate, load_trial_data, subset_accuracy, trial_device, write_trial_row

    trial = TrialConfig.from_dict(trial_dict)
    store = ResultStore(results_root)
    device = trial_device(trial)
    torch.set_num_threads(max(1, int(trial.resources["cpu"])))
    method = er_core.methods.make(trial.method, trial.dataset, device=device, **trial.method_hyperparams())
    fs, folder = _filesystem(trial_path)
    state = restore_latest(method, stored_checkpoints(fs, folder))
    if state.epoch < trial.epochs:
        raise RuntimeError(f"{trial.name}: the newest complete checkpoint is epoch {state.epoch} of "
                           f"{trial.epochs}; repair only re-evaluates trained trials")
    data = load_trial_data(trial, device)
    started = time.perf_counter()
    checkpoint_hash = weights_hash(method.model)
    computed = evaluate(method.model, data, trial, store, checkpoint_hash, lambda done, total: None)
    if trial.detection:
        from grid.detection import run_detection_stage

        run_detection_stage(store, trial, method.model, data, trial.detection, checkpoint_hash)
    row = f"{store.partition_dir(TRIALS_DIR, trial.experiment, trial.dataset, trial.method)}/{trial.trial_id}.parquet"
    if not store.is_committed_intact(row):
        # wall_seconds: training (from the checkpoint) plus this repair's evaluation.
        write_trial_row(store, trial, state, checkpoint_hash, subset_accuracy(method.model, data, trial), device,
                        wall_seconds=state.train_seconds + time.perf_counter() - started)
    return computed


__all__ = ["repair_finished_trials", "repair_trial"]
