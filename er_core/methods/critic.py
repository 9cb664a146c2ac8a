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

Why the critic died, and the defaults
-------------------------------------
The paper gives weight clipping (WGAN) and one critic update per batch, but not the
critic's optimiser, learning rate or width. The first set-up here was Adam at 1e-3, clip
0.01 on weights and biases, two hidden layers of 256. Measured on digits (er_minus, λ 5,
batch 32, seed 0, 60 epochs, PyTorch's default encoder init; 2-core CPU):

==========================  ==========  ===========  ==============  ===========
critic                      live ep 1   live ep 10   live ep 60      ±clip share
==========================  ==========  ===========  ==============  ===========
Adam 1e-3                   0.72        0.23         0.24 (act 0.24)  58%
RMSProp 5e-5                0.79        0.79         0.80 (act 0.60)  16%
RMSProp 5e-5, 5 steps       —           0.89         0.90 at ep 28    —
==========================  ==========  ===========  ==============  ===========

(live = ``critic_live``, act = ``critic_active`` of the last hidden layer.) On a slice of
real MNIST (er_minus, first 5,000 training images, batch 64, 3 epochs, seed 0) the same
split shows early: Adam 1e-3 live 0.74 → 0.66 → 0.40 (44% of parameters at ±clip), RMSProp
5e-5 live 0.89 → 0.84 → 0.80 (33%); PGD-20 at ε 0.1 on 1,000 test images 0.555 vs 0.743,
clean 0.934 vs 0.977. The mechanism:
the second layer's inputs are ReLU outputs, all ≥ 0 and sharing a large common component,
and its bias is clipped to ±0.01 like its weights, too small to offset that component. So a
second-layer unit whose (clipped) weights sum negative along it is off for every input —
dead, it never receives a gradient again — and one whose weights sum positive is on for
every input (with Adam, ``critic_active`` ≈ ``critic_live``: the surviving units are on
for every sample, i.e. linear on the data). Adam moves every weight by ≈ lr = 1e-3, a tenth
of the clip range, per step whatever the gradient's size, so weights bang between the
bounds (58–65% at ±clip) and units cross into the dead state within a few epochs (0.72 →
0.23 live in 10 epochs); dead is absorbing. When the last live unit dies, D is its constant
output bias (+clip), the estimate is 0 and ∇_z D = 0: the MNIST er_minus run that read
``critic_w`` < 3e-4 from epoch 16 on with ``reg`` stuck at 0.0100 (= clip). RMSProp at 5e-5
moves weights 20× slower: most stay inside the bounds and about 80% of the units stay live.
Defaults: RMSProp at 5e-5 (Arjovsky et al.'s setting), clip 0.01, width 256, weights starting
uniform inside ±clip (:func:`init_inside_clip_`), one step per batch (the paper's Algorithm 1).

``critic_steps`` 1 against 5 (WGAN's ratio), chosen on the validation split (PGD-10 at the
training ε on held-out training images; test figures beside it, not used to choose), with the
defaults above, `python bench/bench_er_vs_madry.py` on this 2-core CPU; digits: 1,237 training
images, 200 validation, 12 epochs, batch 32, seeds 0–2, test = the 360 test images, PGD-40;
MNIST slice: 5,000 training images, 1,000 validation, 5 epochs, PGD-20 training, seed 0, 500
test images:

=======================  ==============  ==============  ============  ===================
run                      val PGD-10      test PGD-40      critic_live   reg_grad_ratio (last)
=======================  ==============  ==============  ============  ===================
digits ε 0.1, 1 step     0.855 ± 0.013   0.274 at ε 0.2   0.93          0.16
digits ε 0.1, 5 steps    0.843 ± 0.010   0.270 at ε 0.2   0.93          0.31
digits ε 0.3, 1 step     0.203 ± 0.029   0.160 at ε 0.3   0.86          0.08
digits ε 0.3, 5 steps    0.173 ± 0.019   0.161 at ε 0.3   0.83          0.20
MNIST ε 0.3, 1 step      0.474           0.388 at ε 0.3   0.96          0.08
MNIST ε 0.3, 5 steps     0.418           0.294 at ε 0.3   0.95          0.21
=======================  ==============  ==============  ============  ===================

Five steps double or triple the regulariser's pull (``reg_grad_ratio``) but read lower on
validation everywhere (and at ε 0.3 on digits cost 9 clean points), so one step stays the
default; with the critic starting inside its box both keep over 80% of its units live.

The prior's scale against the code's: at initialisation the codes have std ≈ 0.02
(PyTorch's default init) against the prior's 1. ``encoder_init='he'`` starts them at std ≈ 1,
but it is not the default: the RMSProp critic above stays alive without it, the codes reach
std ≈ 1 within the first epoch anyway, and with it ER−'s robustness gain over E-CLA on
digits vanished (measurements in ``nets``). Where the initial scale did matter is large-ε
adversarial training: there the codes shrank further (std 0.05–0.08 by epoch 2–5 at train
ε 0.3 without warm-up) and the regulariser's pull fell to 0.2–1% of the CE's
(``reg_grad_ratio`` 0.002–0.015): the ε warm-up (``methods.schedule``) is the fix for that.
"""

from __future__ import annotations

import torch

CRITIC_OPTIMIZERS = {"adam": torch.optim.Adam, "rmsprop": torch.optim.RMSprop}


def init_inside_clip_(critic: torch.nn.Module, clip: float) -> None:
    """Weights uniform in [−clip, clip], biases 0: a start the clipping leaves untouched.

    PyTorch's default init (±1/√fan_in: ±0.25 for k = 16, ±0.06 for width 256) is far outside
    the ±0.01 box, so the first clip put 85% of the critic's parameters on the bounds at
    once, a start that is then undone only as fast as the critic's small learning rate allows.
    Uniform over the box is DCGAN's/WGAN's practice of a small init, sized to the clip.
    """
    with torch.no_grad():
        for name, p in critic.named_parameters():
            if name.endswith("bias"):
                p.zero_()
            else:
                p.uniform_(-clip, clip)


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
