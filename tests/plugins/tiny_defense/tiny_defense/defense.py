"""Gaussian-noise training: cross-entropy on images with added noise (a weak, classic defense).

A complete ER-Grid method in one class: it reuses the project's encoder + classifier network
(``Method.build``) and optimiser, declares its one setting with bounds, and trains in ``loss``.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from er_core.methods import Method
from er_core.methods.base import Param


class NoiseTraining(Method):
    name = "noise_training"
    display_name = "Noise training"
    PARAMS = {
        **Method.PARAMS,
        "noise_std": Param(0.1, "std of the Gaussian noise added to training images.", low=0.0, high=1.0),
    }

    def loss(self, x, y):
        noisy = (x + self.hp["noise_std"] * torch.randn_like(x)).clamp(0.0, 1.0)
        ce = F.cross_entropy(self.model(noisy), y)
        return ce, {"ce": float(ce.detach())}
