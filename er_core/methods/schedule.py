"""Per-epoch schedules: the training ε warm-up and the learning-rate schedule.

Both are pure functions of the 0-based epoch index (and the run's length), never of a
step counter or of optimiser state, so a run resumed from an epoch-k checkpoint sets
exactly the values the uninterrupted run used: :meth:`Method.begin_epoch` applies them at
the start of every epoch (``er_core.train.fit`` calls it).

ε warm-up: in epoch e the PGD/TRADES inner maximisation uses ε·min(1, (e+1)/W) with
W = ``eps_warmup_epochs`` (W = 0: full ε from the first epoch). Adversarial training at a
large ε from random initial weights can fall into a constant predictor that never leaves it
(the inner maximiser finds, for every input, a point that looks like any other class, so CE
stays at ln C and its gradient carries no class signal); starting at a small ε and raising
it lets the network first learn features that the larger ε then has to fight.

Learning-rate schedules (a factor on each scheduled optimiser's base lr):

- ``constant``: factor 1.
- ``piecewise``: ×0.1 from 50% of the epochs and ×0.01 from 75% (Madry et al.'s CIFAR10
  schedule: decays at 40k and 60k of 80k steps). Milestone epoch = floor(fraction·epochs).
- ``cosine``: 0.5·(1 + cos(π·e/epochs)), constant within an epoch (Loshchilov & Hutter's
  SGDR without restarts, stepped per epoch).
"""

from __future__ import annotations

import math

LR_SCHEDULES = ("constant", "piecewise", "cosine")
PIECEWISE_MILESTONES = (0.5, 0.75)  # fractions of the run (Madry et al., CIFAR10)
PIECEWISE_DECAY = 0.1


def lr_factor(schedule: str, epoch: int, epochs: int) -> float:
    """Multiplier of the base learning rate in 0-based ``epoch`` of a run of ``epochs``."""
    if schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {schedule!r}")
    if schedule == "constant":
        return 1.0
    if schedule == "piecewise":
        passed = sum(epoch >= math.floor(m * epochs) for m in PIECEWISE_MILESTONES)
        return PIECEWISE_DECAY**passed
    return 0.5 * (1.0 + math.cos(math.pi * epoch / max(epochs, 1)))


def warmup_eps(eps: float, epoch: int, warmup_epochs: int) -> float:
    """Training ε of 0-based ``epoch``: ε·min(1, (epoch+1)/W); W = 0 means no warm-up."""
    if warmup_epochs <= 0:
        return float(eps)
    return float(eps) * min(1.0, (epoch + 1) / warmup_epochs)
