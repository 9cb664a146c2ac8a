"""What a trial reports to Tune while it runs.

Tune's progress table fixes its metric columns at a trial's first report, so every report of a
trial carries the same keys (:class:`ProgressReport`): ``phase`` (``train`` once per epoch,
``eval`` once per evaluation batch, ``done`` once at the end), ``epoch``, the epoch's losses
and its clean accuracy on a held-out slice (:func:`holdout_accuracy` on
``er_core.eval_subset.holdout_indices``), and the evaluation batches done of total, as numbers
(``eval_batches_done``, ``eval_batches_total``) and as the table's ``eval_batches`` text
(``3/12``). A training report repeats the evaluation counters (0 done), an evaluation report
repeats the last epoch's losses and accuracy. The ``done`` report adds ``robust``: the trial's
robust accuracy per ``attack@ε`` from its committed rows (:func:`robust_accuracies`), logged
once (``grid.run.watch``'s TensorBoard callback plots ``train`` reports against the epoch and
``robust`` once, and leaves the ``eval`` reports out).

Tune's own ``trial_id`` in these results is Tune's, not er-grid's: the store's ``trial_id``
is the trial's content hash (``grid.run.watch.tune_results_frame`` names the two apart).
"""

from __future__ import annotations

from typing import Optional

import torch

EVAL_KEYS = ("eval_batches_done", "eval_batches_total")
EVAL_TEXT = "eval_batches"
ROBUST_KEY = "robust"


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


def robust_accuracies(rows) -> dict[str, float]:
    """Robust accuracy (correct clean and under attack) per ``attack@ε`` of one trial's example
    rows (a DataFrame with ``attack``, ``eps``, ``correct_clean``, ``correct_adv``)."""
    from er_core.fidelity_run import column_name

    if rows.empty:
        return {}
    robust = rows["correct_clean"].astype(bool) & rows["correct_adv"].astype(bool)
    means = robust.groupby([rows["attack"], rows["eps"]]).mean()
    return {column_name(attack, float(eps)): float(value) for (attack, eps), value in means.items()}


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
        return self._report("train", 0, self.total)

    def evaluation(self, done: int, total: int) -> dict:
        return self._report("eval", done, total)

    def final(self, robust: dict[str, float]) -> dict:
        """The last report: every batch evaluated, and the robust accuracies, once."""
        return {**self._report("done", self.total, self.total), ROBUST_KEY: dict(robust)}

    def _report(self, phase: str, done: int, total: int) -> dict:
        return {**self.last, "phase": phase, "epoch": self.epoch, "resumed_from": self.resumed_from,
                EVAL_KEYS[0]: done, EVAL_KEYS[1]: total, EVAL_TEXT: f"{done}/{total}"}
