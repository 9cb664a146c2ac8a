"""Classes that break the method contract in one way each (tests/grid/spec/test_plugins.py)."""

from __future__ import annotations

import torch

from er_core.methods import Method
from er_core.methods.base import Param


class NoTrainStep(Method):
    name = "no_train_step"


class UnboundedParam(Method):
    name = "unbounded"
    PARAMS = {**Method.PARAMS, "strength": Param(1.0, "a number with no bounds")}

    def loss(self, x, y):
        return torch.nn.functional.cross_entropy(self.model(x), y), {}


class FlatOnly(Method):
    """Its model wants flat vectors, not (N, C, H, W) images."""

    name = "flat_only"

    def build(self) -> None:
        self.model = torch.nn.Linear(10, 10)

    def loss(self, x, y):
        return torch.nn.functional.cross_entropy(self.model(x), y), {}


class NotAMethod:
    name = "plain"
