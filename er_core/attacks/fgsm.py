"""FGSM (Goodfellow et al., 2015): one signed-gradient step of size ε, L∞ threat model.

Untargeted; cross-entropy loss; x and x_adv in [0, 1], shapes (N, C, H, W).
Usage: ``make("fgsm", eps=0.3)(model, x, y).x_adv``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
import torch.nn.functional as F

from .base import Attack, AttackResult, bad_gradient, project_linf


@dataclass(frozen=True)
class FGSM(Attack):
    name: ClassVar[str] = "fgsm"

    def gradient_passes(self) -> float:
        return 1.0

    def perturb(self, model, x, y) -> AttackResult:
        x_req = x.clone().requires_grad_(True)
        loss = F.cross_entropy(model(x_req), y)
        (grad,) = torch.autograd.grad(loss, x_req)
        x_adv = project_linf(x + self.eps * grad.sign(), x, self.eps)
        return AttackResult(x_adv=x_adv, queries=None, gradient_failed=bad_gradient(grad))
