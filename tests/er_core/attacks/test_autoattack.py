"""AutoAttack wrapper: identical to calling pyautoattack directly, at least as strong as PGD,
inside the ε-ball, version chosen by the model, target classes capped by the class count."""

import pytest
import torch
from pyautoattack import AutoAttack
from torch import nn

from er_core.attacks import make as make_attack
from er_core.attacks.autoattack import build_adversary

EPS = 0.15  # an undefended digits model keeps ~30% under PGD here: every sub-attack runs


@pytest.fixture(scope="module")
def attacked(undefended_digits_model, digits):
    model = undefended_digits_model
    x, y = digits.x_test[:20], digits.y_test[:20]
    return model, x, y, make_attack("autoattack", eps=EPS, seed=0)(model, x, y)


def test_equals_direct_pyautoattack(attacked):
    model, x, y, result = attacked
    direct = AutoAttack(model, norm="Linf", eps=EPS, version="standard", device=x.device, seed=0)
    direct.verbose = False
    x_direct, _ = direct.run_standard_evaluation(x, y, batch_size=500)
    assert torch.equal(result.x_adv, x_direct)


def test_in_ball_and_at_least_as_strong_as_pgd(attacked):
    model, x, y, result = attacked
    assert (result.x_adv - x).abs().max() <= EPS + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    pgd_adv = make_attack("pgd", eps=EPS, steps=40)(model, x, y).x_adv
    with torch.no_grad():
        aa_acc = (model(result.x_adv).argmax(1) == y).float().mean().item()
        pgd_acc = (model(pgd_adv).argmax(1) == y).float().mean().item()
        clean_acc = (model(x).argmax(1) == y).float().mean().item()
    assert aa_acc <= pgd_acc < clean_acc
    assert result.queries is None and result.gradient_failed.dtype == torch.bool


def test_version_follows_randomized_flag_and_targets_fit_the_classes():
    class Tiny(nn.Module):
        def __init__(self, classes, randomized=False):
            super().__init__()
            self.fc = nn.Linear(64, classes)
            self.randomized = randomized

        def forward(self, x):
            return self.fc(x.flatten(1))

    attack = make_attack("autoattack", eps=0.1)
    assert attack.resolved_version(Tiny(10)) == "standard"
    assert attack.resolved_version(Tiny(10, randomized=True)) == "rand"
    assert make_attack("autoattack", eps=0.1, version="standard").resolved_version(Tiny(10, True)) == "standard"
    adversary = build_adversary(Tiny(5), 0.1, "standard", 0, "cpu", num_classes=5)
    assert adversary.apgd_targeted.n_target_classes == 4 and adversary.fab.n_target_classes == 4
    x, y = torch.rand(2, 1, 8, 8), torch.zeros(2, dtype=torch.long)
    with pytest.raises(ValueError, match="needs ≥ 4 classes"):
        attack(Tiny(3), x, y)
    with pytest.raises(ValueError, match="version must be"):
        make_attack("autoattack", eps=0.1, version="plus")


class NoisyLinear(nn.Module):
    """A randomized model: a linear digits classifier whose input gets N(0, σ²) noise on every
    forward pass (as RSE's does), so AutoAttack must pick its 'rand' version for it."""

    randomized = True

    def __init__(self, digits, sigma: float = 0.1):
        super().__init__()
        self.fc, self.sigma = nn.Linear(64, 10), sigma
        with torch.random.fork_rng():
            torch.manual_seed(0)
            self.fc.reset_parameters()
            opt = torch.optim.Adam(self.fc.parameters(), lr=0.05)
            for _ in range(100):  # full-batch training: ≈ 0.95 clean accuracy in well under a second
                opt.zero_grad()
                nn.functional.cross_entropy(self.fc(digits.x_train.flatten(1)), digits.y_train).backward()
                opt.step()

    def forward(self, x):
        return self.fc((x + self.sigma * torch.randn_like(x)).flatten(1))


def test_rand_version_runs_apgd_ce_and_dlr_with_eot(digits, monkeypatch):
    """On a randomized model AutoAttack really runs its 'rand' version: APGD-CE then APGD-DLR,
    each averaging 20 EOT gradient samples, and nothing of 'standard' (no targeted APGD, FAB or
    Square), then the EoT probe. Recorded by a spy around pyautoattack's own APGD (which still runs)."""
    from pyautoattack.autopgd_base import APGDAttack

    model = NoisyLinear(digits).eval()
    x, y = digits.x_test[:8], digits.y_test[:8]
    runs = []
    perturb = APGDAttack.perturb

    def recording(self, *args, **kwargs):
        runs.append((type(self).__name__, self.loss, self.eot_iter))
        return perturb(self, *args, **kwargs)

    monkeypatch.setattr(APGDAttack, "perturb", recording)
    # At ε 0.1 APGD-CE fools some of the 8 and leaves others robust, so APGD-DLR runs too
    # (measured over global seeds 0–2: 3–4 of 7–8 correct examples left robust).
    torch.manual_seed(0)
    result = make_attack("autoattack", eps=0.1, seed=0)(model, x, y)
    # Then the larger-EoT probe on the examples still standing: APGD-CE over 100 samples.
    assert runs == [("APGDAttack", "ce", 20), ("APGDAttack", "dlr", 20), ("APGDAttack", "ce", 100)]
    (probe,) = [m for kind, m in result.notes if kind == "eot_probe"]
    assert int(probe.split("/")[1]) >= 1
    assert (result.x_adv - x).abs().max() <= 0.1 + 1e-6
    assert (result.x_adv != x).any()  # fooled examples came back as APGD's output, not x
