"""Shared test settings and fixtures.

Tests train and attack small real models on CPU. One intra-op thread: with these tiny
networks a second thread buys nothing, and on a loaded 2-core machine (Ray workers,
subprocesses) oversubscribed OpenMP threads made an AutoAttack test file 30× slower.
"""

import pytest
import torch

from er_core.data import load
from er_core.methods import make
from er_core.train import fit

torch.set_num_threads(1)


@pytest.fixture(scope="session")
def digits():
    """scikit-learn's digits, split 1437 train / 360 test (er_core.data)."""
    return load("digits")


@pytest.fixture(scope="session")
def undefended_digits_model(digits):
    """``none`` trained 3 epochs on digits (clean test accuracy ≈ 0.95), in eval mode.

    Shared by the attack tests, which never train it: attacks restore the model's mode.
    """
    method = make("none", "digits")
    fit(method, digits, epochs=3, batch_size=32, seed=0)
    return method.model.eval()


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Groups for ``pytest -n 2 --dist loadgroup`` (what ``make test`` runs): every test that
    starts Ray in one group, so one worker holds the session's Ray head and its shared smoke
    grid; every other file whole on one worker, so its module fixtures (trained models) are
    built once. Without xdist the marks do nothing."""
    for item in items:
        if item.get_closest_marker("xdist_group") is None:
            group = "ray" if item.get_closest_marker("ray") else item.nodeid.split("::", 1)[0]
            item.add_marker(pytest.mark.xdist_group(group))
