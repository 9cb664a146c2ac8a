"""The critic's step and its diagnostics: estimate after the step, live units, regulariser pull."""

import copy

import pytest
import torch

from er_core.methods import make
from er_core.methods.critic import critic_diagnostics, critic_update
from er_core.nets import Critic
from er_core.train import fit


def test_critic_w_is_measured_after_the_critic_step(digits):
    method = make("er_minus", "digits", critic_steps=1)
    with torch.no_grad():
        z = method.model.embed(digits.x_train[:64])
    old_critic = copy.deepcopy(method.critic)
    torch.manual_seed(3)
    logs = critic_update(method, z)
    assert any(not torch.equal(a, b) for a, b in zip(old_critic.parameters(), method.critic.parameters()))
    # Same RNG stream: one prior sample for the step, a fresh one for the diagnostics.
    torch.manual_seed(3)
    torch.randn_like(z)
    z_prior = torch.randn_like(z)
    with torch.no_grad():
        after = method.critic(z_prior).mean() - method.critic(z).mean()
        with_old_critic = old_critic(z_prior).mean() - old_critic(z).mean()
    assert logs["critic_w"] == pytest.approx(float(after), abs=1e-7)
    assert logs["critic_w"] != pytest.approx(float(with_old_critic), abs=1e-7)


def test_live_units_count_dead_and_always_on_relus():
    torch.manual_seed(0)
    critic = Critic(4, hidden=8)
    z = torch.randn(32, 4)
    with torch.no_grad():
        second = critic.net[2]
        second.weight.zero_()
        second.bias.copy_(torch.tensor([-1.0] * 6 + [1.0] * 2))  # 6 dead units, 2 always on
    logs = critic_diagnostics(critic, z)
    assert logs["critic_live"] == pytest.approx(2 / 8)
    assert logs["critic_active"] == pytest.approx(2 / 8)
    with torch.no_grad():
        second.weight.copy_(torch.eye(8))  # unit i copies first-layer unit i: on for some inputs only
        second.bias.zero_()
    logs = critic_diagnostics(critic, z)
    assert logs["critic_live"] > 0.5 and logs["critic_active"] < logs["critic_live"]


def test_reg_grad_ratio_is_proportional_to_lambda(digits):
    x, y = digits.x_train[:64], digits.y_train[:64]
    ratio = {}
    for lam in (0.0, 10.0, 20.0):
        # lr 0 and critic_lr 0: every λ sees the same encoder and critic.
        method = make("er_minus", "digits", lam=lam, lr=0.0, critic_lr=0.0)
        torch.manual_seed(0)
        ratio[lam] = method.train_step(x, y)["reg_grad_ratio"]
    assert ratio[0.0] == 0.0 and ratio[10.0] > 0
    assert ratio[20.0] == pytest.approx(2 * ratio[10.0], rel=1e-4)


@pytest.mark.parametrize("name,hp", [("er", {"pgd_steps": 2}), ("er_minus", {}), ("er_trades", {"pgd_steps": 2})])
def test_fit_reports_the_critic_diagnostics(digits, name, hp):
    history = fit(make(name, "digits", **hp), digits, epochs=1, batch_size=256, seed=0)
    metrics = history[0]
    for key in ("critic_w", "critic_live", "critic_active", "reg_grad_ratio", "lr"):
        assert isinstance(metrics[key], float), key
    assert 0.0 <= metrics["critic_active"] <= metrics["critic_live"] <= 1.0
    assert ("train_eps_epoch" in metrics) == (name != "er_minus")


def test_critic_optimizer_setting():
    assert isinstance(make("er", "digits", critic_optimizer="rmsprop").optimizers["critic"], torch.optim.RMSprop)
    assert isinstance(make("er", "digits", critic_optimizer="adam").optimizers["critic"], torch.optim.Adam)
    with pytest.raises(ValueError, match="critic_optimizer must be one of"):
        make("er", "digits", critic_optimizer="sgd")
