"""One smoke test per registered attack (the shared contract), and one clear error for every
bad name, ε, shape, range or label tensor.

``Attack.__call__`` clamps every result to [0, 1], so a range check on what it returns cannot
fail. The smoke test therefore checks each attack's own output (``perturb``, spied on before
the clamp) for [0, 1] and the ε-ball, and the clamp is tested on its own with an attack that
overshoots on purpose.
"""

from dataclasses import dataclass

import pytest
import torch

from er_core.attacks import ATTACKS, Attack, AttackResult
from er_core.attacks import make as make_attack

# Light settings so the smoke test stays fast; the attacks' own tests use the defaults.
LIGHT = {
    "fgsm": {},
    "pgd": {"steps": 10},
    "pgd_probe": {"steps": 10, "restarts": 2},
    "cw_l2": {"steps": 30, "search_steps": 2},
    "autoattack": {},
    "rays": {"max_queries": 300},
}
EPS = 0.3


@pytest.fixture(scope="module")
def setup(undefended_digits_model, digits):
    return undefended_digits_model, digits.x_test[:12], digits.y_test[:12]


def test_every_attack_has_light_settings():
    assert set(LIGHT) == set(ATTACKS)


def spy_on_perturb(monkeypatch, attack: Attack) -> dict:
    """Record a copy of ``x_adv`` exactly as the attack's own ``perturb`` returns it, before the
    base class clamps it (the clamp works in place, so the copy is taken here)."""
    seen = {}
    cls = type(attack)
    perturb = cls.perturb

    def recording(self, model, x, y):
        result = perturb(self, model, x, y)
        seen["x_adv"] = result.x_adv.detach().clone()
        seen["training"] = model.training
        return result

    monkeypatch.setattr(cls, "perturb", recording)
    return seen


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_smoke_contract(setup, name, monkeypatch):
    model, x, y = setup
    model.train()  # the attack must switch to eval mode and back
    attack = make_attack(name, EPS, **LIGHT[name])
    raw = spy_on_perturb(monkeypatch, attack)
    result = attack(model, x, y)
    assert model.training and raw["training"] is False
    model.eval()
    assert result.x_adv.shape == x.shape and result.x_adv.dtype == x.dtype
    # The attack's own output, not the clamped one: its projection keeps it in [0, 1] and the ball.
    assert raw["x_adv"].min() >= 0 and raw["x_adv"].max() <= 1
    if attack.norm == "Linf":
        assert (raw["x_adv"] - x).abs().max() <= EPS + 1e-6
    assert torch.equal(result.x_adv, raw["x_adv"])  # the clamp changes nothing that was valid
    with torch.no_grad():
        clean = (model(x).argmax(1) == y).float().mean()
        robust = (model(result.x_adv).argmax(1) == y).float().mean()
    assert robust <= clean
    for per_example in (result.queries, result.gradient_failed, *result.extra.values()):
        assert per_example is None or per_example.shape == (len(x),)
    config = attack.config()
    assert config["attack"] == name and config["eps"] == EPS and config["norm"] == attack.norm


@dataclass(frozen=True)
class Overshoots(Attack):
    """Returns x + 2·(noise − ½), far outside [0, 1]: what ``__call__`` must clamp."""

    def perturb(self, model, x, y):
        noise = torch.rand(x.shape, generator=torch.Generator().manual_seed(0))
        return AttackResult(x_adv=x + 2 * (noise - 0.5))


def test_call_clamps_whatever_perturb_returns_to_the_unit_box():
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).train()
    x, y = torch.rand(6, 1, 8, 8), torch.zeros(6, dtype=torch.long)
    raw = Overshoots(eps=0.1).perturb(model, x, y).x_adv
    assert raw.min() < -0.5 and raw.max() > 1.5  # the clamp has work to do
    clamped = Overshoots(eps=0.1)(model, x, y).x_adv
    assert torch.equal(clamped, raw.clamp(0, 1))
    assert model.training and not clamped.requires_grad


def test_unknown_name_and_option():
    with pytest.raises(ValueError, match="unknown attack 'cw'.*valid attacks: autoattack, cw_l2, fgsm, pgd, pgd_probe, rays"):
        make_attack("cw", 0.1)
    with pytest.raises(ValueError, match="unknown option"):
        make_attack("rays", 0.1, queries=5)


@pytest.mark.parametrize("name", sorted(ATTACKS))
@pytest.mark.parametrize("eps", [-0.01, 1.5, "0.1"])
def test_bad_eps(name, eps):
    with pytest.raises(ValueError, match=f"{name}: eps must be a number in \\[0, 1\\]"):
        make_attack(name, eps)


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_bad_inputs(name):
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10))
    attack = make_attack(name, 0.1, **LIGHT[name])
    x, y = torch.rand(4, 1, 8, 8), torch.zeros(4, dtype=torch.long)
    bad = [
        (x[0], y, "shape \\(N, C, H, W\\)"),
        (x * 255, y, "must lie in \\[0, 1\\]"),
        (x.to(torch.uint8), y, "floating point"),
        (x, y[:3], "length 4"),
        (x, y.float(), "int64"),
    ]
    for xb, yb, message in bad:
        with pytest.raises(ValueError, match=f"{name}: .*{message}"):
            attack(model, xb, yb)
