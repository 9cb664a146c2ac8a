"""How long the rest of an experiment will take, for ``er-grid status``: each trial's own pace
(its elapsed time over its progress, training and evaluation weighted by
:func:`grid.run.cost.trial_cost`). The cost model builds each attack to count its passes, so the
estimate needs torch; without it ``status`` says the estimate is unavailable.
"""

from __future__ import annotations

import math
from typing import Optional

from .cost import trial_cost


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

    trials: ``grid.experiment.status.TrialStatus`` rows (with ``elapsed_s`` and ``config``, a TrialConfig).
    A trial's remaining time is its elapsed time × (1 − done) / done; a trial that has not
    started is charged the mean pace of the others per estimated GPU-second. The sum is divided
    by the number of trials that ran at once (running now, at least 1).
    """
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
