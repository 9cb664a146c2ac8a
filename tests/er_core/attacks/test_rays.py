"""RayS: the analytic ℓ∞ optimum of a linear classifier (converged at MNIST shape, no worse than
the authors' reference code at CIFAR10 shape), early stop exactly at ε, the query budget, hard
labels only, already-misclassified examples, and near-zero accuracy of an undefended digits model."""

import sys
from pathlib import Path

import pytest
import torch
from linear_models import TwoClassLinear, linear_problem

from er_core.attacks import make as make_attack

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))
from bench_rays import BUDGETS, N_LINEAR, REFERENCE_RATIOS, SEED  # noqa: E402  the reference's figures


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


def _attack_linear(dim, fraction, n, seed, budget, **options):
    model, x, y, t_star = linear_problem(dim, fraction, n, seed=seed)
    result = make_attack("rays", max_queries=budget, **options)(model, x, y)
    return model, x, y, t_star, result


@pytest.mark.parametrize("fraction, seed", [(0.25, 1), (0.5, 2)])
def test_converges_to_the_linear_optimum_at_mnist_shape(fraction, seed):
    # The bounds are the ones the reference code meets here (its max over such models was ~1.015);
    # this implementation measured medians 1.0001-1.0002 and maxima ≤ 1.00024 over weight-sign
    # mixes 0-50% and seeds 0-4, so they leave room for any float or platform difference and
    # still fail for a search that stalls (the old absolute 1e-4 tolerance gave max 1.14).
    model, x, y, t_star, result = _attack_linear(784, fraction, 12, seed, 10_000, eps=1.0, early_stop=False)
    radius = result.extra["radius"]
    ratio = radius / t_star
    assert ratio.median() <= 1.005 and ratio.max() <= 1.02, ratio
    assert (result.queries <= 10_000).all()
    # Every returned point is adversarial, at exactly the reported ℓ∞ distance, so never below t*.
    assert (model(result.x_adv).argmax(1) != y).all()
    measured = (result.x_adv - x).flatten(1).abs().amax(1)
    assert torch.allclose(measured, radius, rtol=0, atol=1e-12)
    assert (radius >= t_star * (1 - 1e-9)).all()


def test_cifar_shape_improves_with_budget_and_matches_the_reference():
    # Too few queries to converge at D = 3,072: each budget must improve on the last (the search
    # is deterministic, so a larger budget runs the smaller one's search and more), and 10k must
    # end at least as close as the authors' code did on the same models.
    fraction = 0.5
    model, x, y, t_star = linear_problem(3_072, fraction, N_LINEAR, seed=SEED)
    medians, previous = [], None
    for budget in BUDGETS:
        result = make_attack("rays", 1.0, max_queries=budget, early_stop=False)(model, x, y)
        radius = result.extra["radius"]
        assert (model(result.x_adv).argmax(1) != y).all() and (result.queries <= budget).all()
        if previous is not None:
            assert (radius <= previous).all()
        medians.append((radius / t_star).median().item())
        previous = radius
    assert all(a > b for a, b in zip(medians, medians[1:])), medians
    ratio = radius / t_star
    ref_median, ref_p90, ref_max = REFERENCE_RATIOS[(3_072, fraction)][BUDGETS[-1]]
    assert ratio.median() <= ref_median and ratio.quantile(0.9) <= ref_p90 and ratio.max() <= ref_max


@pytest.mark.parametrize("eps", [0.035, 0.05, 0.065])
def test_early_stop_breaks_exactly_the_examples_within_eps(eps):
    # At D = 64 a 1,000-query search ends within 0.025% of t* (measured max over sign mixes and
    # seeds), so an example is broken exactly when t* ≤ ε, except within a 0.1% band below ε.
    model, x, y, t_star, result = _attack_linear(64, 0.5, 48, 5, 1_000, eps=eps)
    broken = result.extra["success"]
    assert not broken[t_star > eps].any()  # every success is a verified adversarial point
    assert broken[t_star <= eps / 1.001].all()
    assert 0 < broken.sum() < len(broken)
    assert (result.x_adv - x).abs().amax() <= eps + 1e-12
    assert (model(result.x_adv[broken]).argmax(1) != y[broken]).all()
    assert (result.queries[~broken] == 1_000).all() and (result.queries[broken] < 1_000).all()
