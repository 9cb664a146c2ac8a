"""The trial-row stage: one row per trial (``grid.store.schemas.TRIAL_SCHEMA``): clean accuracy
judged like the rows' ``correct_clean`` (for a randomized model such as RSE, the worst case over
its passes), per-epoch losses, wall time (training across restarts plus this process's
post-training work), device and checkpoint hash.
"""

from __future__ import annotations

import json
import time

from grid.store.layout import trial_row_path

from .base import SingleFileStage, TrialBundle, trial_batches


def subset_accuracy(model, data, trial, batches=None) -> float:
    """Clean accuracy on the evaluation subset, judged like the rows' ``correct_clean``: per
    evaluation batch, through ``er_core.evaluate.judge`` over the model's passes."""
    import er_core.evaluate
    from er_core.torch_utils import model_device

    if batches is None:
        batches = trial_batches(trial)
    device = model_device(model)
    passes = er_core.evaluate.passes_for(model)
    correct = 0
    for idx in batches:
        x, y = data.test_examples(idx, device)
        correct += int((er_core.evaluate.judge(model, x, y, passes) == y).sum())
    return correct / trial.eval_n


def device_name(device: str) -> str:
    """"cpu" or e.g. "cuda:0 (NVIDIA H100 80GB HBM3)"."""
    if device == "cpu":
        return "cpu"
    import torch

    index = torch.cuda.current_device()
    return f"cuda:{index} ({torch.cuda.get_device_name(index)})"


def write_trial_row(store, trial, state, checkpoint_hash: str, clean_accuracy: float, device: str,
                    wall_seconds: float, hyperparams: dict, evaluated_epoch: int | None = None) -> None:
    """The trial-level row: training curve, clean accuracy, wall time, device, the recipe and
    every resolved hyperparameter, and which epoch's weights were evaluated."""
    store.write_trial({
        "trial_id": trial.trial_id, "experiment": trial.experiment, "dataset": trial.dataset,
        "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
        "epochs": trial.epochs, "clean_accuracy": clean_accuracy, "losses_json": json.dumps(state.losses),
        "wall_seconds": wall_seconds, "device": device_name(device), "checkpoint_hash": checkpoint_hash,
        "recipe": str(hyperparams["recipe"]), "hyperparams_json": json.dumps(hyperparams, sort_keys=True),
        "validation_n": trial.validation_n, "evaluate": trial.evaluate,
        "evaluated_epoch": state.epoch if evaluated_epoch is None else evaluated_epoch,
    })


class TrialRowStage(SingleFileStage):
    name = "trial_row"

    def wants(self, trial) -> bool:
        return True

    def path(self, store, trial) -> str:
        return trial_row_path(store, trial)

    def compute(self, bundle: TrialBundle) -> None:
        accuracy = subset_accuracy(bundle.model, bundle.data, bundle.trial, bundle.batches)
        write_trial_row(bundle.store, bundle.trial, bundle.state, bundle.checkpoint_hash, accuracy, bundle.device,
                        wall_seconds=bundle.state.train_seconds + time.perf_counter() - bundle.started,
                        hyperparams=bundle.method.hyperparams, evaluated_epoch=bundle.evaluated_epoch)


STAGE = TrialRowStage()

__all__ = ["STAGE", "device_name", "subset_accuracy", "write_trial_row"]
