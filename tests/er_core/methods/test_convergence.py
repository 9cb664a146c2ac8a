"""Adversarial training at a large ε: the defaults converge, the old set-up collapses.

digits at train ε 0.3 (three times its default 0.1; its 8×8 images break far sooner than
MNIST's, so this is the digits analogue of MNIST at 0.3), 20 epochs of batch 32.
"""

import math

import pytest

from er_core.methods import make
from er_core.torch_utils import predict
from er_core.train import fit


def _clean_accuracy(model, data):
    return (predict(model, data.x_test) == data.y_test).float().mean().item()


def _trained_accuracy(name: str, digits, seed: int) -> float:
    method = make(name, "digits", train_eps=0.3, init_seed=seed)
    fit(method, digits, epochs=20, batch_size=32, seed=seed)
    return _clean_accuracy(method.model, digits)


# Measured with these defaults (2-core CPU): clean test accuracy after 20 epochs madry 0.889,
# trades 0.964 (seed 0; after 5 epochs 0.925 / 0.961; PGD-20 at ε 0.1: 0.725 / 0.853), far
# above the 0.8 bar the convergence claim sets; a collapsed model sits at ≈ 0.1. Without the
# warm-up er collapsed (test below) and madry reached 0.39 after 5 epochs.
@pytest.mark.parametrize("name", ["madry", "trades"])
def test_defaults_converge_at_eps_0_3(digits, name):
    assert _trained_accuracy(name, digits, seed=0) >= 0.8


def test_er_defaults_converge_at_eps_0_3_over_seeds(digits):
    """er is the closest to the bar: seeds 0 / 1 / 2 measured 0.839 / 0.867 / 0.872 (spread
    0.03), so one seed's margin could vanish on another CPU's float rounding. The claim is the
    mean over three seeds ≥ 0.8 (margin ≈ 0.06, twice the spread), and no seed collapsed."""
    accuracies = [_trained_accuracy("er", digits, seed) for seed in (0, 1, 2)]
    assert sum(accuracies) / 3 >= 0.8 and min(accuracies) > 0.5, accuracies


def test_old_critic_without_warmup_collapses(digits):
    """The configuration that collapses: no warm-up, Adam 1e-3 critic, PyTorch's default init.

    Measured (seed 1): clean test accuracy 0.128 after 4 epochs, 0.083 after 6, 0.092 after 8,
    adversarial CE ≥ 2.31 > ln 10 in every epoch; seed 2 the same (0.108 / 0.081 after 4 / 8).
    The sanity checks' 'collapsed' bar is clean accuracy ≤ 1/C + 0.05 or a final training loss
    within 2% of ln C: both hold here, each by a wide margin.
    """
    method = make(
        "er", "digits", train_eps=0.3, eps_warmup_epochs=0,
        critic_optimizer="adam", critic_lr=1e-3, clip=0.01, encoder_init="torch", init_seed=1,
    )
    history = fit(method, digits, epochs=6, batch_size=32, seed=1)
    assert _clean_accuracy(method.model, digits) <= 0.1 + 0.05
    assert history[-1]["ce"] >= 0.98 * math.log(10), history[-1]
