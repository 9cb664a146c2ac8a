"""The paper's Table 4 criteria (er_core.detect.criteria) and the set I / set II split of the
protocol. No model: well under a second."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from er_core import detect


def test_criteria_hand_computed():
    # 10 adversarial: 6 detected; of the 4 undetected, 3 are classified correctly
    # (one detected example is "correct" too, which must not count anywhere).
    detected = [1, 1, 1, 1, 1, 1, 0, 0, 0, 0]
    adv_correct = [1, 0, 0, 0, 0, 0, 1, 1, 1, 0]
    # 8 natural, 2 wrongly flagged.
    natural_flagged = [0, 0, 1, 0, 0, 1, 0, 0]
    c = detect.criteria(np.array(detected, bool), torch.tensor(adv_correct, dtype=torch.bool), natural_flagged)
    assert c["acc_adv"] == pytest.approx(6 / 10)
    assert c["acc_nadv"] == pytest.approx(6 / 8)
    assert c["acc_cla"] == pytest.approx(3 / 4)
    assert c["acc_com"] == pytest.approx((6 + 3) / 10)
    assert (c["n_adv"], c["n_nat"], c["n_detected"], c["n_undetected"], c["n_undetected_correct"],
            c["n_natural_flagged"]) == (10, 8, 6, 4, 3, 2)


def test_criteria_zero_denominators_are_nan():
    c = detect.criteria([True, True], [False, True], [])
    assert c["acc_adv"] == 1.0 and c["acc_com"] == 1.0
    assert math.isnan(c["acc_cla"])  # nothing undetected
    assert math.isnan(c["acc_nadv"])  # no natural examples
    with pytest.raises(ValueError, match="same length"):
        detect.criteria([True], [True, False], [False])


def test_split_test_set_is_a_fixed_20_80_partition():
    fit, ev = detect.split_test_set(360, seed=3)
    assert len(fit) == 72 and len(ev) == 288
    assert sorted(torch.cat([fit, ev]).tolist()) == list(range(360))
    again, _ = detect.split_test_set(360, seed=3)
    other, _ = detect.split_test_set(360, seed=4)
    assert torch.equal(fit, again) and not torch.equal(fit, other)
