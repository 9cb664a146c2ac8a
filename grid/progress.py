"""What a trial reports to Tune while it runs, and how long the rest of an experiment will take.

Tune's progress table fixes its metric columns at a trial's first report, so every report of a
trial carries the same keys (:class:`ProgressReport`): phase, epoch, the epoch's losses and
its clean accuracy on a held-out slice (:func:`holdout_accuracy`), and evaluation batches done
of total. A training report repeats the evaluation counters (0 done), an evaluation report
repeats the last epoch's losses and accuracy.

:func:`remaining_seconds` estimates the time left for ``er-grid status`` from each trial's own
pace (its elapsed time over its progress, training and evaluation weighted by
:func:`grid.cost.trial_cost`).
"""

from __future__ import annotations

import math
from typing import Optional

import torch

# Examples of the held-out slice: enough for a ±2 % reading of accuracy (binomial std at 0.5
# is 2.2 % for n = 512), small next to an epoch on every dataset.
HOLDOUT_N = 512
EVAL_KEYS = ("eval_batches_done", "eval_batches_total")


def holdout_indices(dataset: str, test_size: int, eval_n: int, eval_seed: int, n: int = HOLDOUT_N) -> torch.Tensor:
    """The first ``n`` test indices outside the evaluation subset (the subset itself if it is
    the whole test set): never trained on, and not the examples the results report, so watching
    it during training selects nothing on the reported numbers."""
    import er_core.data

    subset = set(er_core.data.eval_indices(dataset, eval_n, eval_seed).tolist())
    rest = [i for i in range(test_size) if i not in subset] or sorted(subset)
    return torch.tensor(rest[:n], dtype=torch.int64)


@torch.no_grad()
def holdout_accuracy(model: torch.nn.Module, data, indices: torch.Tensor) -> float:
    """Clean accuracy of ``model`` (eval mode, restored after) on ``data.x_test[indices]``.

    torch's RNG is forked: a randomized model (RSE) draws noise here without changing what the
    next epoch draws (``er_core.train.fit`` reseeds per epoch anyway; this keeps the
    checkpointed RNG state independent of monitoring too).
    """
    from er_core.torch_utils import model_device, predict

    device = model_device(model)
    x, y = data.test_examples(indices, device)
    devices = [device.index or 0] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=devices):
        return float((predict(model, x) == y).float().mean())


class ProgressReport:
    """Builds every Tune report of one trial with the same keys (see the module docstring)."""

    def __init__(self, eval_batches_total: int, resumed_from: int, last_epoch: Optional[dict] = None,
                 epoch: int = 0):
        self.total = eval_batches_total
        self.resumed_from = resumed_from
        self.last = dict(last_epoch or {})
        self.epoch = epoch

    def train(self, epoch_done: int, metrics: dict) -> dict:
        self.epoch = epoch_done
        self.last = {k: v for k, v in metrics.items() if k != "epoch"}
        return {**self.last, "phase": "train", "epoch": epoch_done, "resumed_from": self.resumed_from,
                EVAL_KEYS[0]: 0, EVAL_KEYS[1]: self.total}

    def evaluation(self, done: int, total: int) -> dict:
        return {**self.last, "phase": "eval", "epoch": self.epoch, "resumed_from": self.resumed_from,
                EVAL_KEYS[0]: done, EVAL_KEYS[1]: total}


def trial_fraction_done(epochs_done: int, epochs: int, batches_done: int, batches_total: int,
                        train_seconds: float, eval_seconds: float) -> float:
    """Fraction of a trial's work done, training and evaluation weighted by their estimated cost."""
    total = train_seconds + eval_seconds
    if total <= 0:
        return 1.0
    train = min(epochs_done / epochs, 1.0) if epochs else 1.0
    evaluation = min(batches_done / batches_total, 1.0) if batches_total else 1.0
    return (train * train_seconds + evaluation * eval_seconds) / total


def remaining_seconds(trials: list) -> Optional[float]:
    """Estimated seconds until every trial is done, or None before any trial has made progress.

    trials: ``grid.status.TrialStatus`` rows (with ``elapsed_s`` and ``config``, a TrialConfig).
    A trial's remaining time is its elapsed time × (1 − done) / done; a trial that has not
    started is charged the mean pace of the others per estimated GPU-second. The sum is divided
    by the number of trials that ran at once (running now, at least 1).
    """
    from grid.cost import trial_cost

    paces, left_known, unstarted = [], 0.0, 0.0
    for t in trials:
        config = getattr(t, "config", None)
        if config is None:
            continue
        cost = trial_cost(config)
        done = trial_fraction_done(t.epochs_done, t.epochs, t.batches_done, t.batches_total,
                                   cost.train_seconds, cost.eval_seconds)
        if done >= 1.0:
            continue
        if done > 0 and t.elapsed_s > 0:
            left_known += t.elapsed_s * (1 - done) / done
            paces.append(t.elapsed_s / (done * cost.gpu_seconds) if cost.gpu_seconds else 0.0)
        else:
            unstarted += cost.gpu_seconds
    if not paces:
        return None if unstarted else 0.0
    pace = sum(paces) / len(paces)
    parallel = max(1, sum(1 for t in trials if t.state in ("TRAINING", "EVALUATING")))
    return (left_known + unstarted * pace) / parallel


def format_duration(seconds: Optional[float]) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown (no trial has made progress yet)"
    minutes = seconds / 60
    return f"{minutes:.1f} min" if minutes < 90 else f"{minutes / 60:.1f} h"
