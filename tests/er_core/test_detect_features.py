"""The detectors' feature maths (er_core.detect.features, er_core.detect.kde) on synthetic
data: the LID estimate and the cross-validated KDE bandwidth. No model; a few seconds, nearly
all of it the bandwidth search (13 bandwidths × 3 folds, twice): 6 s on the loaded 2-core CI
machine."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from er_core import detect


def test_lid_mle_recovers_the_dimension_of_a_flat_manifold():
    # Points uniform on a 3-dimensional cube embedded in 20 dimensions: LID ≈ 3.
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(20, 3, generator=g))[0].T  # (3, 20), orthonormal rows
    ref = torch.rand(4000, 3, generator=g) @ basis
    queries = (0.25 + 0.5 * torch.rand(200, 3, generator=g)) @ basis  # away from the cube's faces
    lid = detect.lid_mle(queries, ref, k=20)
    assert 2.3 < lid.mean().item() < 3.7


def test_cv_bandwidth_is_chosen_by_held_out_likelihood():
    """``bandwidth="cv"`` on 1-D Gaussian samples (σ = 1, two classes): the pick is on the grid,
    next to the textbook optimum, and scales with the data (a rule ignoring the data's scale,
    like sklearn's Scott factor, or a wrong argmax would not)."""
    rng = np.random.default_rng(0)
    f = rng.normal(size=(900, 1))
    labels = np.repeat([0, 1], 450)
    chosen = detect.ClassKDE("cv", standardize=False).fit(f, labels, 2).bandwidth_
    scaled = detect.ClassKDE("cv", standardize=False).fit(10 * f, labels, 2).bandwidth_
    grid = np.array(detect.CV_BANDWIDTHS)
    assert chosen in detect.CV_BANDWIDTHS
    # Silverman's rule 1.06·σ·n^(−1/5) with the 600 training points of a fold is 0.29; the grid
    # steps by 10^0.25, so the held-out optimum is at most one step away from it.
    rule = 1.06 * 600 ** (-1 / 5)
    assert abs(np.log10(chosen) - np.log10(rule)) <= 0.25 + 1e-9
    assert scaled == pytest.approx(10 * chosen) and scaled == grid[np.argmin(abs(grid - 10 * chosen))]
