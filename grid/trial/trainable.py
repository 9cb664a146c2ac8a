"""A trial's two entry points: train then run the post-training stages (what Ray Tune calls),
or run only the missing stages of a finished trial from its newest checkpoint (``er-grid
resume``'s repair). Both build the same :class:`~grid.stages.TrialBundle` and iterate the one
registry of stages, ``grid.stages.STAGES``, so a trial's outputs never depend on which path
produced them.

``train_and_evaluate(config)`` is what Tune calls. ``config`` is Tune's ``param_space`` entry
for one trial: ``{"trial": TrialConfig.to_dict(), "results": <results URI or None>}``.
``results`` is None for local storage: the results then live in ``<experiment dir>/results``,
found from Tune's storage context at run time, so an experiment folder that was moved
(``Tuner.restore`` on the new path) keeps writing next to itself; no absolute path of ours
is stored anywhere. An object-store URI (``s3://bucket/grid?endpoint_override=…``) is passed
explicitly because its query arguments are not recoverable from Tune's filesystem object.

Steps:

1. restore: the newest checkpoint (``grid.trial.checkpoints``: method state_dict with model,
   critic and every optimiser, finished epoch, losses so far, torch RNG state), loaded with
   ``torch.load(weights_only=True)``;
2. :func:`load_trial_data`: the dataset once per trial; small datasets move to the trial's
   device as whole tensors, larger ones stay on the host;
3. :func:`train`: the remaining epochs through ``er_core.train.fit``; after every epoch a
   checkpoint is reported with the metrics (losses, clean accuracy on a held-out test slice and,
   with a validation split, clean and PGD-10 accuracy on it; every report has the same keys,
   ``grid.trial.progress``); the best-validation weights travel in the checkpoint;
4. the evaluated weights: the last epoch's, or the best on validation (``evaluate``);
5. ``grid.stages.run_stages``: evaluation, detection, codes, trial row, sanity, each skipping
   what is committed and intact (one report per evaluation batch);
6. a last report with the robust accuracy per (attack, ε), read back from the committed rows.

Test hooks (``grid.common.faults``, used by the resume tests; unset in normal runs) SIGKILL the
trial process after a given epoch or evaluation batch.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

import er_core.data
import er_core.methods
import er_core.train
from er_core.eval_subset import holdout_indices
from er_core.validation import validation_eps, validation_metrics, with_validation
from grid.common.faults import KILL_AFTER_EPOCHS_ENV, kill_if_asked
from grid.common.locations import filesystem
from grid.spec import TrialConfig
from grid.spec.models_plan import file_sha256, is_model_trial, local_weights
from grid.stages import TrialBundle, run_stages
from grid.store import ResultStore

from .checkpoints import (
    TrainState, checkpoint_candidates, evaluated_epoch, restore_latest, save_state, stored_checkpoints, weights_hash,
)
from .data_staging import local_dataset_dir
from .progress import ProgressReport, holdout_accuracy, robust_accuracies

# --------------------------------------------------------------------------- entry points


def train_and_evaluate(config: dict) -> None:
    """Tune function trainable. ``config``: ``{"trial": TrialConfig dict, "results": str|None}``."""
    from ray import tune

    trial = TrialConfig.from_dict(config["trial"])
    store = ResultStore(results_root(config["results"]))
    device, method = trial_method(trial)
    state = restore_latest(method, checkpoint_candidates(tune.get_checkpoint(), trial.epochs))
    data = load_trial_data(trial, device)
    # Every report carries the same keys (Tune fixes its columns at the first one): losses,
    # held-out clean accuracy and evaluation batches, in training and evaluation alike.
    progress = ProgressReport(len(trial.eval_batches()), state.epoch, (state.losses or [{}])[-1], state.epoch)
    holdout = holdout_indices(trial.dataset, len(data.y_test), trial.eval_n, trial.eval_seed)

    def report_epoch(epoch_done: int, metrics: dict, state_now: TrainState) -> None:
        kill_if_asked(KILL_AFTER_EPOCHS_ENV, epoch_done - 1)
        watched = {"holdout_accuracy": holdout_accuracy(method.model, data, holdout),
                   **validation_metrics(method.model, data, validation_eps(trial.dataset, trial.train_eps), trial.seed,
                                      epoch_done)}
        metrics = {**metrics, **watched}
        state_now.losses[-1].update(watched)
        state_now.watch_validation(method.model, epoch_done, watched)
        with tempfile.TemporaryDirectory(prefix="er_grid_ckpt_") as tmp:
            save_state(method, state_now, Path(tmp))
            tune.report(progress.train(epoch_done, metrics), checkpoint=tune.Checkpoint.from_directory(tmp))

    state = train(method, data, trial, state, report_epoch)
    evaluated = evaluated_epoch(method, state, trial.evaluate)

    def report_progress(done: int, total: int) -> None:
        tune.report(progress.evaluation(done, total))

    run_stages(TrialBundle(trial=trial, store=store, method=method, data=data,
                           checkpoint_hash=weights_hash(method.model), device=device, state=state,
                           evaluated_epoch=evaluated, report_progress=report_progress))
    # Read back from the committed rows, so the number Tune shows is the store's.
    rows = store.load(experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                      trial_id=trial.trial_id, damaged="skip")
    tune.report(progress.final(robust_accuracies(rows)))


def repair_trial(trial_dict: dict, trial_path: str, results_root: str) -> dict[str, int]:
    """Run the stages of a finished trial again from its newest checkpoint in ``trial_path``,
    computing only what the store lacks (a damaged file is moved aside first). Returns the
    files written per stage."""
    trial = TrialConfig.from_dict(trial_dict)
    device, method = trial_method(trial)
    fs, folder = filesystem(trial_path)
    state = restore_latest(method, stored_checkpoints(fs, folder, trial.epochs))
    if state.epoch < trial.epochs:
        raise RuntimeError(f"{trial.name}: the newest complete checkpoint is epoch {state.epoch} of "
                           f"{trial.epochs}; repair only re-evaluates trained trials")
    data = load_trial_data(trial, device)
    evaluated = evaluated_epoch(method, state, trial.evaluate)
    # wall_seconds of a rewritten trial row: training (from the checkpoint) plus this repair.
    return run_stages(TrialBundle(trial=trial, store=ResultStore(results_root), method=method, data=data,
                                  checkpoint_hash=weights_hash(method.model), device=device, state=state,
                                  evaluated_epoch=evaluated))


def trial_method(trial: TrialConfig) -> tuple[str, object]:
    """(device, the trial's er_core method, untrained), with one intra-op thread per reserved CPU
    so that several trials share a node without oversubscribing."""
    device = trial_device(trial)
    torch.set_num_threads(max(1, int(trial.resources["cpu"])))
    if is_model_trial(trial):
        return device, external_model(trial, device)
    check_plugin_unchanged(trial)
    return device, er_core.methods.make(trial.method, trial.dataset, device=device, **trial.method_hyperparams())


def external_model(trial: TrialConfig, device: str):
    """A ``models:`` entry's network with its weights, after checking the file is the one the
    trial was planned with (its sha256 is part of trial_id)."""
    from er_core.methods.external import load_external

    identity = trial.method_identity
    with local_weights(trial.weights) as local:
        if file_sha256(local) != identity["weights_sha256"]:
            raise RuntimeError(f"{trial.name}: {trial.weights} changed since the trial was planned; its rows would "
                               "mix two models. Evaluate the new file as a new experiment")
        return load_external(identity["factory"], local, trial.dataset, identity["normalizes_input"],
                             identity["kwargs"], device=device)


def check_plugin_unchanged(trial: TrialConfig) -> None:
    """A plugin method's code must be what the trial was planned with (its identity is part of
    trial_id): a changed plugin stops the trial instead of writing new code's rows under the
    old id (e.g. on ``er-grid resume`` after editing the plugin)."""
    if trial.method_identity is None:
        return
    from er_core.methods.plugins import plugin_identity

    now = plugin_identity(trial.method)
    if now != trial.method_identity:
        raise RuntimeError(f"{trial.name}: plugin method {trial.method!r} changed since the trial was planned "
                           f"(was {trial.method_identity}, now {now}); its rows would mix two versions of the code. "
                           "Run the changed plugin as a new experiment")


# --------------------------------------------------------------------------- locations


def results_root(results: Optional[str]) -> str:
    """The store root: ``results`` when given, else ``<experiment dir>/results`` from Tune."""
    if results is not None:
        return results
    import pyarrow.fs
    from ray import tune

    storage = tune.get_context().get_storage()
    if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        raise ValueError(
            "results: an object-store experiment needs its results URI in the trial config "
            "(grid.run.tuner passes <storage URI>/<experiment>/results); got None"
        )
    return str(Path(storage.experiment_fs_path) / "results")


def trial_device(trial: TrialConfig) -> str:
    """cuda when the trial reserved a GPU (fractions included) and one is visible, else cpu."""
    return "cuda" if trial.resources["gpu"] > 0 and torch.cuda.is_available() else "cpu"


# --------------------------------------------------------------------------- data + training


def load_trial_data(trial: TrialConfig, device: str) -> er_core.data.Data:
    """Load the dataset once per trial; small ones go to the device whole (no DataLoader).

    ``trial.data_root`` holds one folder per dataset (``<data_root>/<dataset>``, like
    ``$ER_GRID_DATA_ROOT``), locally or on an object store (copied once per node, see
    ``grid.trial.data_staging``); None means er_core's default. Nothing is downloaded here.
    """
    root = None if trial.data_root is None else local_dataset_dir(trial.data_root, trial.dataset)
    data = with_validation(er_core.data.load(trial.dataset, root=root), trial.validation_n)
    return er_core.data.for_training(data, device)



def train(method, data, trial: TrialConfig, state: TrainState,
          report_epoch: Callable[[int, dict, TrainState], None]) -> TrainState:
    """Train epochs ``state.epoch + 1 .. trial.epochs``; ``report_epoch`` checkpoints each."""
    if state.epoch >= trial.epochs:
        return state
    last = time.perf_counter()

    def on_epoch(epoch_done: int, metrics: dict) -> None:
        nonlocal last
        now = time.perf_counter()
        state.epoch = epoch_done
        state.losses.append({k: float(v) for k, v in metrics.items()})
        state.train_seconds += now - last
        last = now
        report_epoch(epoch_done, metrics, state)

    er_core.train.fit(
        method, data, epochs=trial.epochs, batch_size=trial.batch_size,
        start_epoch=state.epoch, seed=trial.seed, on_epoch=on_epoch,
    )
    return state


__all__ = ["load_trial_data", "repair_trial", "results_root", "train", "train_and_evaluate", "trial_device"]
