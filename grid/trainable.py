"""The Ray Tune function trainable: one grid trial = train one model, then evaluate it.

``train_and_evaluate(config)`` is what Tune calls. ``config`` is Tune's ``param_space`` entry
for one trial: ``{"trial": TrialConfig.to_dict(), "results": <results URI or None>}``.
``results`` is None for local storage: the results then live in ``<experiment dir>/results``,
found from Tune's storage context at run time, so an experiment folder that was moved
(``Tuner.restore`` on the new path) keeps writing next to itself; no absolute path of ours
is stored anywhere. An object-store URI (``s3://bucket/grid?endpoint_override=…``) is passed
explicitly because its query arguments are not recoverable from Tune's filesystem object.

Steps (each a named function below):

1. ``restore_state``: the latest checkpoint from ``tune.get_checkpoint()`` (method
   state_dict with model, critic and every optimiser, finished epoch, losses so far,
   torch RNG state), loaded with ``torch.load(weights_only=True)``.
2. ``load_trial_data``: the dataset once per trial; small datasets (digits, MNIST,
   CIFAR10) move to the trial's device as whole tensors, larger ones stay on the host.
3. ``train``: the remaining epochs through ``er_core.train.fit``; after every epoch a
   checkpoint directory is written to a temporary folder and reported with the metrics
   (losses and clean accuracy on a held-out slice; every report has the same keys, see
   ``grid.progress``).
4. ``evaluate``: the evaluation plan on ``eval_indices(dataset, eval_n, eval_seed)``, batch
   by batch through ``er_core.evaluate.attack_batch``, skipping (attack, ε, batch) whose file
   is committed and intact (``ResultStore.done_batches``; a missing or damaged one is moved
   aside and recomputed); every row carries the fingerprint of what produced it. A batch
   that runs out of CUDA memory is retried in halves.
5. the detection stage when the trial has one (``grid.detection``), then the codes stage
   (``grid.codes``: the code z under PGD for the t-SNE figures) when it has one.
6. ``write_trial_row``: clean accuracy (judged like the rows' ``correct_clean``: for RSE the
   worst case over its passes), per-epoch losses, wall time (training across
   restarts plus this process's evaluation), device.

Fingerprint rule: every row carries what produced it (``attack_config``:
the attack's full config as canonical JSON; ``checkpoint_hash``: sha256 of the final model
weights; ``eval_subset``; ``seed``; ``library_versions``; ``code_version``). A changed spec
gives new ``trial_id``s (the id hashes the whole trial config, evaluation plan included), so
its rows land beside the old ones, never in the same trial. Within one ``trial_id``, if the
store already holds rows for an (attack, ε) whose attack config, checkpoint hash or subset
differ from the current ones (changed attack defaults in the code, a retrained checkpoint
that came out different), the trial stops with :class:`FingerprintMismatch` naming what
differs; it never adds rows of a second fingerprint to the same trial. ``attack_config`` comes
from ``er_core.evaluate.attack_fingerprint`` and includes the torch and pyautoattack
versions, so a resume after upgrading either also stops (other libraries are recorded in
``library_versions`` only).

Test hooks (``grid.faults``, used by the resume tests to inject faults; unset in normal
runs) SIGKILL the trial process after a given epoch or evaluation batch.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Callable, Optional

import torch

import er_core
import er_core.data
import er_core.evaluate
import er_core.methods
import er_core.train
from er_core.torch_utils import derive_seed, model_device
from grid.checkpoints import TrainState, checkpoint_candidates, restore_latest, save_state, weights_hash
from grid.codes import run_codes_stage
from grid.data_staging import local_dataset_dir
from grid.faults import KILL_AFTER_BATCHES_ENV, KILL_AFTER_EPOCHS_ENV, kill_if_asked
from grid.fingerprint import canonical_json, eval_subset_tag, library_versions
from grid.progress import ProgressReport, holdout_accuracy, holdout_indices
from grid.spec import TrialConfig
from grid.store import ResultStore


class FingerprintMismatch(RuntimeError):
    """Stored rows of this trial were produced by a different checkpoint or attack setting."""


# --------------------------------------------------------------------------- entry point


def train_and_evaluate(config: dict) -> None:
    """Tune function trainable. ``config``: ``{"trial": TrialConfig dict, "results": str|None}``."""
    from ray import tune

    trial = TrialConfig.from_dict(config["trial"])
    store = ResultStore(results_root(config["results"]))
    device = trial_device(trial)
    # One intra-op thread per reserved CPU: several trials share a node without oversubscribing.
    torch.set_num_threads(max(1, int(trial.resources["cpu"])))

    method = er_core.methods.make(trial.method, trial.dataset, device=device, **trial.method_hyperparams())
    state = restore_latest(method, checkpoint_candidates(tune.get_checkpoint()))
    data = load_trial_data(trial, device)
    # Every report carries the same keys (Tune fixes its columns at the first one): losses,
    # held-out clean accuracy and evaluation batches, in training and evaluation alike.
    progress = ProgressReport(len(trial.eval_batches()), state.epoch, (state.losses or [{}])[-1], state.epoch)
    holdout = holdout_indices(trial.dataset, len(data.y_test), trial.eval_n, trial.eval_seed)

    def report_epoch(epoch_done: int, metrics: dict, state_now: TrainState) -> None:
        kill_if_asked(KILL_AFTER_EPOCHS_ENV, epoch_done - 1)
        metrics = {**metrics, "holdout_accuracy": holdout_accuracy(method.model, data, holdout)}
        state_now.losses[-1]["holdout_accuracy"] = metrics["holdout_accuracy"]
        with tempfile.TemporaryDirectory(prefix="er_grid_ckpt_") as tmp:
            save_state(method, state_now, Path(tmp))
            tune.report(progress.train(epoch_done, metrics), checkpoint=tune.Checkpoint.from_directory(tmp))

    state = train(method, data, trial, state, report_epoch)
    checkpoint_hash = weights_hash(method.model)

    def report_progress(done: int, total: int) -> None:
        tune.report(progress.evaluation(done, total))

    eval_started = time.perf_counter()
    evaluate(method.model, data, trial, store, checkpoint_hash, report_progress)
    if trial.detection:  # the optional detection stage
        from grid.detection import run_detection_stage

        run_detection_stage(store, trial, method.model, data, trial.detection, checkpoint_hash)
    if trial.codes:  # the code z under PGD for the t-SNE figures
        run_codes_stage(store, trial, method.model, data, trial.codes, checkpoint_hash)
    write_trial_row(
        store, trial, state, checkpoint_hash, subset_accuracy(method.model, data, trial), device,
        wall_seconds=state.train_seconds + time.perf_counter() - eval_started,
    )
    from grid.sanity import check_trial

    check_trial(store, trial)  # sanity flags from the rows and the trial row just written


# --------------------------------------------------------------------------- locations


def results_root(results: Optional[str]) -> str:
    """The store root: ``results`` when given, else ``<experiment dir>/results`` from Tune."""
    if results is not None:
        return results
    from ray import tune
    import pyarrow.fs

    storage = tune.get_context().get_storage()
    if not isinstance(storage.storage_filesystem, pyarrow.fs.LocalFileSystem):
        raise ValueError(
            "results: an object-store experiment needs its results URI in the trial config "
            "(grid.run passes <storage URI>/<experiment>/results); got None"
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
    ``grid.data_staging``); None means er_core's default. Nothing is downloaded here.
    """
    root = None if trial.data_root is None else local_dataset_dir(trial.data_root, trial.dataset)
    return er_core.data.for_training(er_core.data.load(trial.dataset, root=root), device)


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


# --------------------------------------------------------------------------- evaluation


def eval_fingerprint(trial: TrialConfig, attack: str, eps: float, options: dict, checkpoint_hash: str) -> dict:
    """The fingerprint columns of every row of one (attack, ε) evaluation of this trial.

    ``attack_config`` (with torch/pyautoattack versions), ``checkpoint_hash`` and
    ``eval_subset`` decide the outcome and are checked against stored rows
    (:func:`check_fingerprints`); ``library_versions`` is recorded, not checked.
    """
    config = er_core.evaluate.attack_fingerprint(attack, eps, **options)
    return {
        "norm": config["norm"],
        "attack_config": canonical_json(config),
        "checkpoint_hash": checkpoint_hash,
        "eval_subset": eval_subset_tag(trial.eval_n, trial.eval_seed),
        "library_versions": library_versions(),
    }


CHECKED_FINGERPRINT = ("attack_config", "checkpoint_hash", "eval_subset")


def check_fingerprints(store: ResultStore, trial: TrialConfig, expected: dict[tuple[str, float], dict]) -> None:
    """Stop if stored rows of this trial carry another fingerprint for the same (attack, ε)."""
    # Damaged committed files are left out: they are recomputed, not compared.
    stored = store.load(experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                        trial_id=trial.trial_id, damaged="skip")
    if stored.empty:
        return
    stored = stored[["attack", "eps", *CHECKED_FINGERPRINT]].drop_duplicates()
    clashes = []
    for row in stored.itertuples(index=False):
        want = expected.get((row.attack, float(row.eps)))
        if want is None:
            continue  # an (attack, ε) no longer in the plan: left alone, never rewritten
        for column in CHECKED_FINGERPRINT:
            if getattr(row, column) != want[column]:
                clashes.append(f"{row.attack} eps={row.eps}: {column} stored {getattr(row, column)!r}, "
                               f"now {want[column]!r}")
    if clashes:
        raise FingerprintMismatch(
            f"trial {trial.trial_id} ({trial.dataset}/{trial.method}) of experiment "
            f"{trial.experiment!r} already has rows produced by a different checkpoint or attack "
            f"setting: {'; '.join(sorted(set(clashes)))}. Rows of two fingerprints are never mixed: "
            "evaluate the change under a new experiment name, or delete this trial's rows first."
        )


def batch_seed(trial: TrialConfig, attack: str, eps: float, batch: int) -> int:
    """Seed for one evaluation batch, derived from config only, so a batch redone after a
    crash (or in any order) draws the same random starts as in an uninterrupted run."""
    return derive_seed(trial.seed, trial.eval_seed, attack, float(eps), batch, sep="|")


def attack_with_oom_retry(model, attack: str, x, y, eps: float, sample_idx: list, options: dict) -> list[dict]:
    """``attack_batch``; on CUDA out-of-memory, the same examples in two halves (recursively)."""
    try:
        return er_core.evaluate.attack_batch(model, attack, x, y, eps, sample_idx=sample_idx, **options)
    except torch.cuda.OutOfMemoryError:
        if len(y) == 1:
            raise
        torch.cuda.empty_cache()
        half = len(y) // 2
        return (attack_with_oom_retry(model, attack, x[:half], y[:half], eps, sample_idx[:half], options)
                + attack_with_oom_retry(model, attack, x[half:], y[half:], eps, sample_idx[half:], options))


def evaluation_batches(trial: TrialConfig) -> list[torch.Tensor]:
    """The fixed evaluation subset cut into ``trial.num_eval_batches`` batches of indices."""
    indices = er_core.data.eval_indices(trial.dataset, trial.eval_n, trial.eval_seed)
    return list(torch.split(indices, trial.eval_batch_size))


def evaluate(model, data, trial: TrialConfig, store: ResultStore, checkpoint_hash: str,
             report_progress: Callable[[int, int], None]) -> int:
    """Run the evaluation plan batch by batch, skipping stored batches. Returns batches computed."""
    batches = evaluation_batches(trial)
    fingerprints = {
        (item.attack, float(item.eps)): eval_fingerprint(trial, item.attack, item.eps, item.options, checkpoint_hash)
        for item in trial.eval_plan
    }
    check_fingerprints(store, trial, fingerprints)
    done = store.done_batches(trial.experiment, trial.dataset, trial.method, trial.trial_id)
    todo = [(item, b) for item in trial.eval_plan for b in range(len(batches))
            if (item.attack, float(item.eps), b) not in done]
    total = len(trial.eval_plan) * len(batches)
    finished = total - len(todo)
    device = model_device(model)
    trial_columns = {"train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed, "epochs": trial.epochs}
    for computed, (item, b) in enumerate(todo, start=1):
        idx = batches[b]
        torch.manual_seed(batch_seed(trial, item.attack, item.eps, b))
        x, y = data.test_examples(idx, device)
        rows = attack_with_oom_retry(model, item.attack, x, y, float(item.eps), idx.tolist(), dict(item.options))
        extra = {**trial_columns, **fingerprints[(item.attack, float(item.eps))]}
        store.write_batch(
            [{**row, **extra} for row in rows], experiment=trial.experiment, dataset=trial.dataset,
            method=trial.method, trial_id=trial.trial_id, attack=item.attack, eps=float(item.eps), batch=b,
        )
        finished += 1
        report_progress(finished, total)
        kill_if_asked(KILL_AFTER_BATCHES_ENV, computed)
    return len(todo)


def subset_accuracy(model: torch.nn.Module, data, trial: TrialConfig) -> float:
    """Clean accuracy on the evaluation subset, judged like the rows' ``correct_clean``: per
    evaluation batch, through ``er_core.evaluate.judge`` over the model's passes (the worst
    case of several ensemble passes for a randomized model such as RSE, one pass otherwise)."""
    device = model_device(model)
    passes = er_core.evaluate.passes_for(model)
    correct = 0
    for idx in evaluation_batches(trial):
        x, y = data.test_examples(idx, device)
        correct += int((er_core.evaluate.judge(model, x, y, passes) == y).sum())
    return correct / trial.eval_n


def device_name(device: str) -> str:
    """"cpu" or e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device == "cpu":
        return "cpu"
    index = torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def write_trial_row(store: ResultStore, trial: TrialConfig, state: TrainState, checkpoint_hash: str,
                    clean_accuracy: float, device: str, wall_seconds: float) -> None:
    """The trial-level row: training curve, clean accuracy, wall time, device."""
    store.write_trial({
        "trial_id": trial.trial_id, "experiment": trial.experiment, "dataset": trial.dataset,
        "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
        "epochs": trial.epochs, "clean_accuracy": clean_accuracy, "losses_json": json.dumps(state.losses),
        "wall_seconds": wall_seconds, "device": device_name(device), "checkpoint_hash": checkpoint_hash,
    })
