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


def linear_problem(dim: int, negative_fraction: float, n: int, seed: int = 0, dtype=torch.float64):
    """A two-class linear model of ``dim`` inputs and ``n`` examples with a known ℓ∞ optimum.

    Weights: magnitudes |N(0, 1)| + 0.1 (no weight is negligible, so every coordinate's sign
    matters), each negative with probability ``negative_fraction``. Examples: inputs drawn in
    [0.4, 0.6], then moved along sign(w) so the minimal ℓ∞ distance t* = |w·x + b| / ‖w‖₁ is
    uniform in [0.02, 0.08], on a random side of the boundary. The inputs stay in [0.3, 0.7]
    and the optimum x − t*·sign(w·x + b)·sign(w) in [0.22, 0.78]: no clipping binds, so t* is
    the true minimum in [0, 1]. Returns ``(model, x (n, 1, dim, 1), y, t_star (float64))``.
    """
    g = torch.Generator().manual_seed(seed)
    f64 = dict(generator=g, dtype=torch.float64)
    w = (torch.randn(dim, **f64).abs() + 0.1) * torch.where(torch.rand(dim, **f64) < negative_fraction, -1.0, 1.0)
    l1 = w.abs().sum()
    x0 = 0.4 + 0.2 * torch.rand(n, dim, **f64)
    b = -(x0 @ w).mean().item()
    t_target = 0.02 + 0.06 * torch.rand(n, **f64)
    side = torch.where(torch.rand(n, **f64) < 0.5, -1.0, 1.0)
    x = x0 + ((side * t_target * l1 - (x0 @ w + b)) / l1)[:, None] * torch.sign(w)
    score = x @ w + b
    assert 0.3 <= x.min() and x.max() <= 0.7
    return TwoClassLinear(w.to(dtype), b), x.to(dtype).view(n, 1, dim, 1), (score > 0).long(), score.abs() / l1
