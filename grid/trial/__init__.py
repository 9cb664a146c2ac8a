"""One trial: the Tune trainable and the repair of a finished trial (``trainable``), both over
one :class:`~grid.stages.TrialBundle`; its checkpoints (``checkpoints``), what it reports to
Tune (``progress``) and its data on the node (``data_staging``). The one room that loads torch
at import."""

from __future__ import annotations

from .checkpoints import TrainState, restore_latest, save_state, weights_hash
from .trainable import repair_trial, train_and_evaluate

__all__ = ["TrainState", "repair_trial", "restore_latest", "save_state", "train_and_evaluate", "weights_hash"]
