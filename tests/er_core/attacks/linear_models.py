"""Known-answer models for the attack tests (imported by test files in this folder)."""

import torch
from torch import nn


class TwoClassLinear(nn.Module):
    """logits ``scale · [0, w·x + b]``: the decision boundary is the hyperplane w·x + b = 0.

    The minimal ℓ∞ distance to it is |w·x + b| / ‖w‖₁ and the minimal ℓ2 distance
    |w·x + b| / ‖w‖₂; ``scale`` changes the logits but not a single label.
    """

    def __init__(self, w: torch.Tensor, b: float, scale: float = 1.0) -> None:
        super().__init__()
        self.register_buffer("w", w)
        self.b, self.scale = b, scale

    def forward(self, x):
        score = x.flatten(1) @ self.w + self.b
        return self.scale * torch.stack([torch.zeros_like(score), score], dim=1)
