"""A trained model back from an experiment: :func:`load_model`.

    import grid
    method = grid.load_model("results/smoke", "4fbfefe1e7")      # newest checkpoint
    logits = method.model.eval()(x)                              # x: (N, C, H, W) in [0, 1]

The trial's config comes from the experiment's ``grid_spec.json`` (written by ``er-grid run``),
its weights from ``<experiment>/<trial name>/checkpoint_*/state.pt``, loaded with
``torch.load(weights_only=True)``: plain tensors and Python values only, nothing unpickled.
Works on local folders and object-store URIs (``s3://bucket/er-grid/smoke``).
"""

from __future__ import annotations

import io
from typing import Optional

from grid.common.locations import filesystem

from grid.spec.models_plan import is_model_trial, local_weights

from .files import STATE_FILE, checkpoint_epochs
from .spec_record import experiment_folder, read_record, recorded_trial


def load_model(experiment: str, trial_id: str, epoch: Optional[int] = None, device: str = "cpu",
               best_validation: bool = False):
    """The ``er_core`` method of trial ``trial_id`` with its trained weights (model, critic, optimisers).

    experiment: the experiment folder ``<storage>/<experiment>`` (or its ``results`` folder);
    trial_id: the 10-hex-digit id (``trial_id`` column of the result rows); epoch: the epoch
    whose checkpoint to load (None: the newest kept); device: where the weights go;
    best_validation: put the best-validation epoch's model weights (carried in every checkpoint of a
    trial with a validation split) into ``method.model`` instead, and set ``method.loaded_epoch`` to it.
    Raises ValueError naming what is missing (no such trial, no checkpoint of that epoch, no
    validation readings).
    """
    import torch

    import er_core.methods

    folder = experiment_folder(experiment)
    record = read_record(folder)
    if trial_id not in record["trials"]:
        raise ValueError(f"trial_id: {trial_id!r} is not a trial of {experiment}; trials: "
                         f"{', '.join(sorted(record['trials']))}")
    config = recorded_trial(record, trial_id)
    if is_model_trial(config):  # a models: entry: its own weights file, no checkpoints
        from er_core.methods.external import load_external

        identity = config.method_identity
        with local_weights(config.weights) as local:
            return load_external(identity["factory"], local, config.dataset, identity["normalizes_input"],
                                 identity["kwargs"], device=device)
    fs, base = filesystem(folder)
    checkpoints = {}  # epoch → folder; a checkpoint cut short (no readable sidecar) is not offered
    for stored_epoch, _seconds, path in checkpoint_epochs(fs, f"{base}/{config.name}", config.epochs):
        checkpoints.setdefault(stored_epoch, path)
    if not checkpoints:
        raise ValueError(f"trial {trial_id}: no checkpoint in {base}/{config.name}")
    chosen = max(checkpoints) if epoch is None else epoch
    if chosen not in checkpoints:
        raise ValueError(f"epoch: trial {trial_id} has no checkpoint of epoch {epoch}; kept: "
                         f"{', '.join(str(e) for e in sorted(checkpoints))}")
    with fs.open_input_stream(f"{checkpoints[chosen]}/{STATE_FILE}") as stream:
        payload = torch.load(io.BytesIO(stream.read()), map_location=device, weights_only=True)
    method = er_core.methods.make(config.method, config.dataset, device=device, **config.method_hyperparams())
    method.load_state_dict(payload["method"])
    method.loaded_epoch = int(payload["epoch"])
    if best_validation:
        if "best_model" not in payload:
            raise ValueError(f"best_validation: trial {trial_id} has no validation readings (validation_n "
                             f"{config.validation_n}); load the last epoch instead")
        method.model.load_state_dict(payload["best_model"])
        method.loaded_epoch = int(payload["best_epoch"])
    method.model.eval()
    return method
