"""RayS: the analytic ℓ∞ optimum of a linear classifier, the query budget, hard labels only,
already-misclassified examples, and near-zero accuracy of an undefended digits model."""

import pytest
import torch
from linear_models import TwoClassLinear

from er_core.attacks import make as make_attack


@pytest.fixture(scope="module")
def linear():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(64, generator=g)
    # Pixels in [0.35, 0.65] and ℓ∞ boundary distances in [0.02, 0.2]: the optimum stays in [0, 1].
    x = 0.35 + 0.3 * torch.rand(16, 1, 8, 8, generator=g)
    b = -(x.flatten(1) @ w).mean().item()
    score = x.flatten(1) @ w + b
    t_star = score.abs() / w.abs().sum()
    keep = (t_star > 0.02) & (t_star < 0.2)
    assert keep.sum() >= 4
    return TwoClassLinear(w, b), x[keep], (score[keep] > 0).long(), t_star[keep]


@pytest.fixture(scope="module")
def digits_model(undefended_digits_model, digits):
    return undefended_digits_model, digits.x_test[:60], digits.y_test[:60]


def test_linear_radius_within_5_percent_of_analytic(linear):
    model, x, y, t_star = linear
    budget = 1000
    result = make_attack("rays", eps=1.0, max_queries=budget, early_stop=False)(model, x, y)
    radius = result.extra["radius"]
    assert ((radius / t_star - 1).abs() <= 0.05).all(), (radius, t_star)
    assert (radius >= t_star * (1 - 1e-5)).all()  # every kept point was confirmed adversarial
    assert (result.queries <= budget).all() and result.queries.max() == budget
    measured = (result.x_adv - x).flatten(1).abs().amax(1)
    assert torch.allclose(measured, radius)  # radius is the ℓ∞ distance of the returned image
    assert (model(result.x_adv).argmax(1) != y).all()


def test_budget_is_never_exceeded_and_ball_is_kept(linear):
    model, x, y, t_star = linear
    for budget in (1, 7, 37):
        result = make_attack("rays", eps=0.05, max_queries=budget)(model, x, y)
        assert (result.queries <= budget).all()
        assert (result.x_adv - x).abs().max() <= 0.05 + 1e-6
        assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
        # x_adv leaves x only where the attack succeeded inside the ball.
        moved = (result.x_adv != x).flatten(1).any(1)
        assert torch.equal(moved, result.extra["success"])


def test_hard_label_only_and_deterministic(linear):
    model, x, y, _ = linear
    rescaled = TwoClassLinear(model.w, model.b, scale=1000.0)  # same argmax, different logits
    a = make_attack("rays", eps=0.05, max_queries=300)(model, x, y)
    b = make_attack("rays", eps=0.05, max_queries=300)(rescaled, x, y)
    assert torch.equal(a.x_adv, b.x_adv) and torch.equal(a.queries, b.queries)


def test_misclassified_examples_cost_nothing(linear):
    model, x, y, _ = linear
    y_wrong = y.clone()
    y_wrong[:2] = 1 - y_wrong[:2]
    result = make_attack("rays", eps=0.05, max_queries=200)(model, x, y_wrong)
    assert result.queries[:2].tolist() == [0, 0]
    assert result.extra["radius"][:2].tolist() == [0.0, 0.0]
    assert torch.equal(result.x_adv[:2], x[:2])


def test_undefended_digits_accuracy_near_zero_at_large_eps(digits_model):
    model, x, y = digits_model
    eps = 0.3
    result = make_attack("rays", eps=eps, max_queries=2000)(model, x, y)
    accuracy = (model(result.x_adv).argmax(1) == y).float().mean().item()
    assert accuracy <= 0.1
    assert (result.x_adv - x).abs().max() <= eps + 1e-6
    assert result.x_adv.min() >= 0 and result.x_adv.max() <= 1
    # Early stop: a successful example stops querying long before the budget.
    assert result.queries[result.extra["success"]].float().mean() < 200
