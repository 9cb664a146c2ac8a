"""A model trained elsewhere, in the place of a method: evaluated, never trained.

``ExternalModel(model, dataset, normalizes_input=True)`` holds any ``nn.Module`` that maps a
batch of the dataset's shape to (N, classes) logits. ``normalizes_input=False`` says the model
expects inputs already normalised with the dataset's mean/std (as many released checkpoints
do): it is then wrapped in the dataset's ``Normalize`` layer, so that every attack works in the
[0, 1] image space and every ε keeps its meaning. The model is checked once on a [0, 1] batch
(one clear error naming the shape it gave). It is put in eval mode and never trained.
"""

from __future__ import annotations

import torch
from torch import nn

from ..dataset_info import info
from ..nets import Normalize


def check_model_io(model: nn.Module, dataset: str, where: str, error=ValueError, device="cpu") -> None:
    """``error("<where> ...")`` unless ``model`` maps a [0, 1] batch of two ``dataset`` images to
    (2, classes) logits: the one check every model from outside passes (plugins, external models)."""
    record = info(dataset)
    shape = ", ".join(map(str, record.shape))
    with torch.no_grad():
        try:
            logits = model(torch.rand(2, *record.shape, device=device))
        except Exception as err:
            raise error(f"{where} its model does not take a [0, 1] batch of {dataset} images of shape (2, {shape}) "
                        f"({type(err).__name__}: {err})") from err
    if not isinstance(logits, torch.Tensor) or tuple(logits.shape) != (2, record.num_classes):
        got = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits).__name__
        raise error(f"{where} its model returned {got} for 2 {dataset} images, expected (2, {record.num_classes}) logits")


class ExternalModel:
    """What the post-training stages need of a method: ``model`` and ``hyperparams``."""

    name = "external"
    display_name = "external model"

    def __init__(self, model: nn.Module, dataset: str, normalizes_input: bool = True, device="cpu") -> None:
        record = info(dataset)
        if not isinstance(model, nn.Module):
            raise ValueError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
        if not normalizes_input:
            model = nn.Sequential(Normalize(*record.normalization), model)
        self.model = model.to(device).eval()
        self.dataset = dataset
        self.device = torch.device(device)
        self.hyperparams = {"recipe": "external", "normalizes_input": bool(normalizes_input)}
        check_model_io(self.model, dataset, "model:", device=self.device)

    @property
    def randomized(self) -> bool:
        return bool(getattr(self.model, "randomized", False))





def load_external(factory: str, weights: str, dataset: str, normalizes_input: bool = True, kwargs=None,
                  device="cpu") -> ExternalModel:
    """The model ``factory`` (``package.module:callable``, called with ``kwargs``) builds, with the
    state_dict in the file ``weights`` loaded into it (``torch.load(weights_only=True)``: nothing
    is unpickled), as an :class:`ExternalModel`. Importing the factory runs its module's code."""
    import importlib

    module_name, _, attribute = factory.partition(":")
    if not module_name or not attribute:
        raise ValueError(f"factory: {factory!r} must be 'package.module:callable'")
    try:
        build = getattr(importlib.import_module(module_name), attribute)
    except (ImportError, AttributeError) as err:
        raise ValueError(f"factory: cannot import {factory!r} ({type(err).__name__}: {err})") from err
    model = build(**dict(kwargs or {}))
    try:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    except Exception as err:  # an unreadable file, or one that would need unpickling
        raise ValueError(f"weights: {weights} does not load with weights_only=True ({type(err).__name__}: "
                         f"{str(err).splitlines()[0] if str(err) else ''})") from err
    try:
        model.load_state_dict(state)
    except Exception as err:
        raise ValueError(f"weights: {weights} does not fit the model {factory!r} builds "
                         f"({type(err).__name__}: {str(err).splitlines()[0]})") from err
    return ExternalModel(model, dataset, normalizes_input=normalizes_input, device=device)
__all__ = ["ExternalModel", "load_external"]
