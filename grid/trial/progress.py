"""What a trial reports to Tune while it runs, and how long the rest of an experiment will take.

Tune's progress table fixes its metric columns at a trial's first report, so every report of a
trial carries the same keys (:class:`ProgressReport`): phase, epoch, the epoch's losses and
its clean accuracy on a held-out slice (:func:`holdout_accuracy` on
``er_core.eval_subset.holdout_indices``), and evaluation batches done of total. A training report
repeats the evaluation counters (0 done), an evaluation report repeats the last epoch's losses
and accuracy. (The time left that ``er-grid status`` estimates is ``grid.run.estimate``.)
"""

from __future__ import annotations

from typing import Optional

import torch

EVAL_KEYS = ("eval_batches_done", "eval_batches_total")


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
