"""PGD and FGSM on a trained undefended digits model: inside the ε-ball and [0, 1], and effective."""

import pytest
import torch

from er_core.attacks import make as make_attack
from er_core.attacks.pgd import pgd_examples


@pytest.fixture(scope="module")
def setup(undefended_digits_model, digits):
    return undefended_digits_model, digits.x_test[:200], digits.y_test[:200]


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("attack", ["pgd", "fgsm"])
@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0])
def test_stays_in_ball_and_unit_box(setup, attack, eps):
    model, x, y = setup
    options = {"steps": 10} if attack == "pgd" else {}
    x_adv = make_attack(attack, eps, **options)(model, x, y).x_adv
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0


def test_pgd_examples_for_training_stay_in_ball(setup):
    model, x, y = setup
    x_adv = pgd_examples(model, x, y, eps=0.1, steps=5, step_size=0.05)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.09  # it actually moved to the ball's surface


def test_pgd_drives_undefended_accuracy_to_near_zero(setup):
    model, x, y = setup
    clean = _accuracy(model, x, y)
    fgsm = _accuracy(model, make_attack("fgsm", 0.1)(model, x, y).x_adv, y)
    pgd_small = _accuracy(model, make_attack("pgd", 0.1, steps=20)(model, x, y).x_adv, y)
    pgd_large = _accuracy(model, make_attack("pgd", 0.3, steps=20)(model, x, y).x_adv, y)
    assert clean >= 0.9
    assert pgd_small <= fgsm + 0.02 and pgd_small < clean - 0.2  # iterating is at least as strong
    assert pgd_large <= 0.05


def test_pgd_restores_training_mode_and_rejects_bad_eps(setup):
    model, x, y = setup
    model.train()
    make_attack("pgd", 0.1, steps=2)(model, x[:4], y[:4])
    assert model.training
    model.eval()
    with pytest.raises(ValueError, match="eps"):
        make_attack("pgd", 1.5)
