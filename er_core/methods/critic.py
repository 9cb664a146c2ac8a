"""The WGAN critic's training step and its health diagnostics (used by the ER family).

``critic_update(method, z_fake)`` runs ``critic_steps`` steps ascending
mean D(z_prior) − mean D(z_fake) with fresh N(0, I) prior samples each step, clipping every
critic parameter to ±``clip`` after each step (Arjovsky et al., 2017). It returns, measured
AFTER the steps on a fresh prior sample and the same codes (no gradient):

- ``critic_w``: the Wasserstein estimate mean D(z_prior) − mean D(z). Measured after the
  critic's step because before it the codes were just optimised against the old critic
  and the estimate reads low.
- ``critic_live``: share of the last hidden layer's ReLU units that are positive for at
  least one of the prior + code samples of the batch. A unit at 0 on every input passes no
  gradient to anything: when most are dead, ∇_z D vanishes and the regulariser stops acting.
- ``critic_active``: mean share of (unit, sample) pairs of that layer that are positive.

Optimisers (``critic_optimizer``): ``'rmsprop'`` (the WGAN paper's choice: momentum-based
optimisers such as Adam were unstable with weight clipping) or ``'adam'``.
"""

from __future__ import annotations

import torch

CRITIC_OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def make_critic_optimizer(name: str, params, lr: float) -> torch.optim.Optimizer:
    if name not in CRITIC_OPTIMIZERS:
        raise ValueError(f"critic_optimizer must be one of {list(CRITIC_OPTIMIZERS)}, got {name!r}")
    return CRITIC_OPTIMIZERS[name](params, lr=lr)


def critic_update(method, z_fake: torch.Tensor) -> dict[str, float]:
    """Train ``method.critic`` on detached codes ``z_fake``; return the diagnostics above."""
    critic, opt, clip = method.critic, method.optimizers["critic"], float(method.hp["clip"])
    for _ in range(int(method.hp["critic_steps"])):
        z_prior = torch.randn_like(z_fake)
        w_estimate = critic(z_prior).mean() - critic(z_fake).mean()
        opt.zero_grad(set_to_none=True)
        (-w_estimate).backward()
        opt.step()
        with torch.no_grad():
            for p in critic.parameters():
                p.clamp_(-clip, clip)
    return critic_diagnostics(critic, z_fake)


@torch.no_grad()
def critic_diagnostics(critic, z_fake: torch.Tensor) -> dict[str, float]:
    """``critic_w``, ``critic_live``, ``critic_active`` of ``critic`` on a fresh prior sample + ``z_fake``."""
    z_prior = torch.randn_like(z_fake)
    w_after = critic(z_prior).mean() - critic(z_fake).mean()
    last = critic.hidden_activations(torch.cat([z_prior, z_fake]))[-1] > 0
    return {
        "critic_w": float(w_after),
        "critic_live": float(last.any(0).float().mean()),
        "critic_active": float(last.float().mean()),
    }
