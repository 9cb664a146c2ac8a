"""A trial's checkpoints: the method's state (model, critic, every optimiser), where training
stopped (:class:`TrainState`) and torch's RNG state, written to a folder Tune persists, with a
few-byte ``epoch.json`` sidecar so the newest checkpoint on storage is found without
downloading every state file. Loaded with ``torch.load(weights_only=True)``: nothing is
unpickled.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import torch

from grid.experiment.files import EPOCH_FILE, STATE_FILE, checkpoint_epochs


@dataclasses.dataclass
class TrainState:
    """What a checkpoint holds besides the method: where training stopped and how it went."""

    epoch: int = 0
    losses: list = dataclasses.field(default_factory=list)  # one dict of mean losses per epoch
    train_seconds: float = 0.0
    # The epoch with the best PGD accuracy on the validation split so far (first of equals) and
    # the model's weights then: they travel in every checkpoint, so whatever keep_checkpoints
    # drops, the best-validation model stays loadable beside the last (Rice et al.'s early stop).
    best_epoch: int = 0
    best_val_pgd: float = -1.0
    best_model: dict | None = None

    def watch_validation(self, model: torch.nn.Module, epoch_done: int, metrics: dict) -> None:
        """Keep ``model``'s weights if this epoch's ``val_pgd`` beats every earlier one."""
        if "val_pgd" in metrics and metrics["val_pgd"] > self.best_val_pgd:
            self.best_epoch, self.best_val_pgd = epoch_done, float(metrics["val_pgd"])
            self.best_model = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}


def evaluated_epoch(method, state: TrainState, evaluate: str) -> int:
    """Put the weights the stages evaluate into ``method.model`` and return their epoch: the
    last epoch's (``evaluate`` "last", or no validation split) or the best on validation."""
    if evaluate == "best_validation" and state.best_model is not None:
        method.model.load_state_dict(state.best_model)
        return state.best_epoch
    return state.epoch


def save_state(method, state: TrainState, directory: Path) -> None:
    """Write the checkpoint: plain tensors and Python values only (weights_only loads it)."""
    payload = {
        "method": method.state_dict(),
        "epoch": state.epoch,
        "losses": json.dumps(state.losses),
        "train_seconds": state.train_seconds,
        "torch_rng": torch.get_rng_state(),
        "best_epoch": state.best_epoch,
        "best_val_pgd": state.best_val_pgd,
    }
    if state.best_model is not None:
        payload["best_model"] = state.best_model
    tmp = directory / (STATE_FILE + ".tmp")
    torch.save(payload, tmp)
    os.replace(tmp, directory / STATE_FILE)
    # A few bytes naming the epoch, so a restore can pick the newest checkpoint on storage
    # without downloading every state file.
    (directory / EPOCH_FILE).write_text(json.dumps({"epoch": state.epoch, "train_seconds": state.train_seconds}))


def checkpoint_candidates(tune_checkpoint, epochs: int | None = None) -> list:
    """Checkpoints to restore from, newest epoch first: this trial's on storage, then Tune's.

    Why not only ``tune.get_checkpoint()``: Tune learns of a trial's checkpoints from the
    experiment state that the driver saves every few seconds, so after the driver itself is
    killed (a crash of the job, not of the trial) Tune may restore the trial with an older
    checkpoint or none, although newer ones are already persisted in the trial's folder.
    """
    from ray import tune

    storage = tune.get_context().get_storage()
    tune_checkpoints = [tune_checkpoint] if tune_checkpoint is not None else []
    return stored_checkpoints(storage.storage_filesystem, storage.trial_fs_path, epochs) + tune_checkpoints


def stored_checkpoints(fs, trial_path: str, epochs: int | None = None) -> list:
    """The ``checkpoint_*`` folders persisted in a trial folder, newest epoch first (by the
    epoch sidecar; one without a readable sidecar was not persisted completely, and one whose
    sidecar claims an epoch beyond the trial's ``epochs`` cannot be true and is not offered)."""
    from ray import tune

    return [tune.Checkpoint(path, filesystem=fs)
            for _epoch, _seconds, path in checkpoint_epochs(fs, trial_path, epochs)]


def restore_latest(method, candidates: list) -> TrainState:
    """Restore from the first candidate that loads; a checkpoint cut short by a kill during
    its upload fails to load and the next older one is used. Fresh state when none loads."""
    for checkpoint in candidates:
        try:
            return restore_state(method, checkpoint)
        except (OSError, RuntimeError, EOFError, KeyError):
            continue
    return TrainState()


def restore_state(method, checkpoint) -> TrainState:
    """Load the latest reported checkpoint into ``method``; a fresh TrainState if none."""
    if checkpoint is None:
        return TrainState()
    with checkpoint.as_directory() as directory:
        payload = torch.load(Path(directory) / STATE_FILE, map_location="cpu", weights_only=True)
    method.load_state_dict(payload["method"])
    # fit reseeds the global RNG from (seed, epoch) at every epoch start; restoring it here
    # keeps anything drawn before the first resumed epoch identical as well.
    torch.set_rng_state(payload["torch_rng"])
    return TrainState(
        epoch=int(payload["epoch"]),
        losses=json.loads(payload["losses"]),
        train_seconds=float(payload["train_seconds"]),
        best_epoch=int(payload.get("best_epoch", 0)),
        best_val_pgd=float(payload.get("best_val_pgd", -1.0)),
        best_model=payload.get("best_model"),
    )


def weights_hash(model: torch.nn.Module) -> str:
    """sha256 (16 hex digits) of the model's weights (names, shapes, dtypes, bytes).

    The checkpoint's identity in result rows. Only the inference model counts: optimiser
    and critic state do not change what is evaluated.
    """
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{tuple(t.shape)}|{t.dtype}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()[:16]
