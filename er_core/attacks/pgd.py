"""PGD (Madry et al., 2018): projected gradient ascent on the cross-entropy, L∞ ball.

Defaults are Madry's MNIST-style settings scaled to ε: 40 steps of size ε/4 (at least
2.5·ε/steps so the ball's far side is reachable), uniform random start, 1 restart.
Each step projects around the original input (not the previous iterate) and clips to
[0, 1]. With several restarts an example keeps the first restart that fools the model.
The ascent loop itself is :func:`linf_ascent`, shared with the training-time examples
(:func:`pgd_examples`, and TRADES' KL maximisation in ``er_core.methods.trades``).
x, x_adv in [0, 1], shapes (N, C, H, W). Usage: ``make("pgd", eps=0.1, steps=20)(model, x, y)``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, ClassVar, Optional

import torch
import torch.nn.functional as F

from .base import Attack, AttackResult, bad_gradient, project_linf


@dataclass(frozen=True)
class PGD(Attack):
    name: ClassVar[str] = "pgd"
    steps: int = 40
    step_size: Optional[float] = None  # None: max(ε/4, 2.5·ε/steps)
    restarts: int = 1
    random_start: bool = True
    seed: int = 0

    at_least: ClassVar[dict] = {"steps": 1, "restarts": 1}
    greater_than: ClassVar[dict] = {"step_size": 0.0}  # None (the default rule) is allowed

    @property
    def alpha(self) -> float:
        if self.step_size is not None:
            return float(self.step_size)
        return max(self.eps / 4, 2.5 * self.eps / self.steps)

    def gradient_passes(self) -> float:
        return float(self.steps * self.restarts)

    def perturb(self, model, x, y) -> AttackResult:
        generator = torch.Generator(device=x.device).manual_seed(self.seed)
        best, failed = self._one_run(model, x, y, generator)
        with torch.no_grad():
            fooled = model(best).argmax(1) != y
        for _ in range(self.restarts - 1):
            # Later restarts only replace examples that no earlier restart fooled.
            x_adv, _failed = self._one_run(model, x, y, generator)
            with torch.no_grad():
                take = (model(x_adv).argmax(1) != y) & ~fooled
            best[take] = x_adv[take]
            fooled |= take
        queries = torch.full((len(x),), self.restarts * (self.steps + 1), dtype=torch.int64)
        return AttackResult(x_adv=best, queries=queries, gradient_failed=failed & ~fooled)

    def _one_run(self, model, x, y, generator):
        if self.random_start and self.eps > 0:
            noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
            x_adv = project_linf(x + (2 * noise - 1) * self.eps, x, self.eps)
        else:
            x_adv = x.clone()

        def ce_sum(logits):
            return F.cross_entropy(logits, y, reduction="sum")

        x_adv, first_grad = linf_ascent(model, x, x_adv, self.eps, self.steps, self.alpha, ce_sum)
        if first_grad is None:
            return x_adv, torch.zeros(len(x), dtype=torch.bool, device=x.device)
        return x_adv, bad_gradient(first_grad)


def linf_ascent(
    model, x: torch.Tensor, x_start: torch.Tensor, eps: float, steps: int, alpha: float,
    loss_of_logits: Callable[[torch.Tensor], torch.Tensor],
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """``steps`` signed-gradient ascent steps of size ``alpha`` on ``loss_of_logits(model(x_adv))``
    from ``x_start``, each projected to the L∞ ε-ball around ``x`` and to [0, 1].

    Returns (x_adv detached, the first step's gradient or None when ``steps`` is 0: the attack
    reads it for examples whose gradient was zero or non-finite). The caller owns the model's
    mode and the start point's randomness.
    """
    x_adv, first_grad = x_start, None
    for step in range(steps):
        x_adv.requires_grad_(True)
        (grad,) = torch.autograd.grad(loss_of_logits(model(x_adv)), x_adv)
        if step == 0:
            first_grad = grad
        with torch.no_grad():
            x_adv = project_linf(x_adv + alpha * grad.sign(), x, eps)
    return x_adv.detach(), first_grad


def pgd_examples(model, x, y, eps: float, steps: int, step_size: float, generator=None) -> torch.Tensor:
    """PGD adversarial examples for *training* (no eval-mode switch, no checks, one run).

    Used inside training loops, where the caller owns the model mode and the RNG: the random
    start draws from ``generator`` so a resumed run reproduces the same examples.
    """
    if eps == 0:
        return x.detach()
    noise = torch.rand(x.shape, generator=generator, device=x.device, dtype=x.dtype)
    x_start = project_linf(x + (2 * noise - 1) * eps, x, eps)
    x_adv, _first_grad = linf_ascent(model, x, x_start, eps, steps, step_size,
                                     lambda logits: F.cross_entropy(logits, y))
    return x_adv
