"""PGD and FGSM on a trained undefended digits model: FGSM is exactly one signed-gradient step,
PGD's own output stays inside the ε-ball and [0, 1], restarts keep the first one that fools
each example, and the attacks are effective.

Range and ball checks look at ``perturb``'s output, before ``Attack.__call__`` clamps to
[0, 1] (a check after the clamp could not fail).
"""

import pytest
import torch
import torch.nn.functional as F

from er_core.attacks import make as make_attack
from er_core.attacks.pgd import pgd_examples


@pytest.fixture(scope="module")
def setup(undefended_digits_model, digits):
    return undefended_digits_model, digits.x_test[:200], digits.y_test[:200]


def _accuracy(model, x, y):
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("eps", [0.0, 0.05, 0.3, 1.0])
def test_pgd_own_output_stays_in_ball_and_unit_box(setup, eps):
    model, x, y = setup
    # Step 0.4·ε over 10 steps travels up to 4ε: without the projection it would leave the ball.
    # (At ε = 0 any positive step must still leave x unchanged: the ball is a point.)
    x_adv = make_attack("pgd", eps, steps=10, step_size=0.4 * eps if eps > 0 else 0.01).perturb(model, x, y).x_adv
    assert x_adv.shape == x.shape
    assert (x_adv - x).abs().max() <= eps + 1e-6
    assert x_adv.min() >= 0.0 and x_adv.max() <= 1.0
    if eps > 0:
        assert (x_adv - x).abs().max() > 0.99 * eps  # it reached the ball's surface


@pytest.mark.parametrize("eps", [0.05, 0.1, 0.3])
def test_fgsm_is_exactly_one_signed_gradient_step_of_size_eps(setup, eps):
    model, x, y = setup
    x_req = x.clone().requires_grad_(True)
    F.cross_entropy(model(x_req), y).backward()
    sign = x_req.grad.sign()
    x_adv = make_attack("fgsm", eps).perturb(model, x, y).x_adv
    # Interior pixels (the step cannot cross 0 or 1) move by exactly ε·sign(∇ loss).
    interior = (x >= eps) & (x <= 1 - eps) & (sign != 0)
    assert interior.sum() > 1000  # enough such pixels for the check to mean something
    assert torch.allclose((x_adv - x)[interior], eps * sign[interior], atol=1e-6, rtol=0)
    # Everywhere: that step, cut to [0, 1] (digits has many pixels at exactly 0).
    assert torch.allclose(x_adv, (x + eps * sign).clamp(0, 1), atol=1e-6, rtol=0)


def test_pgd_examples_for_training_stay_in_ball(setup):
    model, x, y = setup
    x_adv = pgd_examples(model, x, y, eps=0.1, steps=5, step_size=0.05)
    assert (x_adv - x).abs().max() <= 0.1 + 1e-6 and x_adv.min() >= 0 and x_adv.max() <= 1
    assert (x_adv - x).abs().max() > 0.09  # it actually moved to the ball's surface


def test_pgd_restarts_keep_the_first_restart_that_fools_each_example(setup):
    model, x, y = setup
    # One short step from a random start in a wide ball, so the start decides whether an example
    # is fooled: over seeds 1, 2, 7 a later restart alone fooled 14 of 200 examples each time.
    attack = make_attack("pgd", 0.2, steps=1, step_size=0.02, restarts=3, seed=7)
    result = attack(model, x, y)
    # The three restarts, run one by one from the same generator stream the attack uses.
    generator = torch.Generator().manual_seed(7)
    runs = torch.stack([attack._one_run(model, x, y, generator)[0] for _ in range(3)])
    with torch.no_grad():
        fooled = torch.stack([model(run).argmax(1) != y for run in runs])  # (restarts, N)
    # The check has power only if some examples are fooled by a later restart alone.
    assert (fooled[1:].any(0) & ~fooled[0]).sum() >= 3
    first = fooled.float().argmax(0)  # the first fooling restart; 0 where none fools
    assert torch.equal(result.x_adv, runs[first, torch.arange(len(x))])
    with torch.no_grad():
        assert torch.equal(model(result.x_adv).argmax(1) != y, fooled.any(0))
    assert result.queries.tolist() == [3 * (1 + 1)] * len(x)


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
