"""Detectors (KD, LID, ER1, ER2), the paper's criteria and the Section 4.5 protocol on digits.

Runtime ≈ 10 s on 2 idle CPU threads (much longer on a loaded machine), mostly the module fixture (training an undefended
net with dropout and an ER-Classifier on digits, crafting FGSM/PGD/C&W on set I and II,
fitting every detector for every fit attack once).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from er_core import data as er_data
from er_core import detect, methods, train

ATTACKS = {
    "fgsm": detect.AttackSetting.of("fgsm", 0.3),
    "pgd": detect.AttackSetting.of("pgd", 0.3, steps=10),
    # Lighter than the attack's defaults; the RMS-ℓ2 bound 0.007 is MNIST's (digits uses it).
    # One 5-step round at c = 1: few C&W examples fit the 0.007 bound anyway, and the test
    # checks the bound handling, not the attack (tests/er_core/attacks covers C&W itself).
    "cw_l2": detect.AttackSetting.of("cw_l2", 0.007, steps=5, search_steps=1, initial_const=1.0, max_const=1.0),
}


# ----------------------------------------------------------------------------- criteria


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


def test_lid_mle_recovers_the_dimension_of_a_flat_manifold():
    # Points uniform on a 3-dimensional cube embedded in 20 dimensions: LID ≈ 3.
    g = torch.Generator().manual_seed(0)
    basis = torch.linalg.qr(torch.randn(20, 3, generator=g))[0].T  # (3, 20), orthonormal rows
    ref = torch.rand(4000, 3, generator=g) @ basis
    queries = (0.25 + 0.5 * torch.rand(200, 3, generator=g)) @ basis  # away from the cube's faces
    lid = detect.lid_mle(queries, ref, k=20)
    assert 2.3 < lid.mean().item() < 3.7


def test_configs_validate_and_registry_lists_four_detectors():
    assert set(detect.DETECTORS) == {"kd", "lid", "er1", "er2"}
    assert detect.default_config("kd", "mnist").bandwidth == 1.20
    assert detect.default_config("kd", "cifar10").bandwidth == 0.26
    assert detect.LIDConfig().k == 20 and detect.LIDConfig().minibatch == 100
    assert detect.KDConfig().mc_passes == 50
    with pytest.raises(ValueError, match="valid detectors"):
        detect.make("nope")
    with pytest.raises(ValueError, match="k < minibatch"):
        detect.LIDConfig(k=100, minibatch=100)
    with pytest.raises(ValueError, match="valid options"):
        detect.make("er1", bandwith=0.3)


# ----------------------------------------------------------------------------- on digits


@pytest.fixture(scope="module")
def digits_run():
    data = er_data.load("digits")
    undefended = methods.make("none", "digits", dropout=0.5)
    train.fit(undefended, data, epochs=10, batch_size=64, seed=0)
    # λ = 10: the method's default λ = 100 does not train on digits in a few epochs;
    # 3 PGD steps keep the adversarial training cheap.
    er = methods.make("er", "digits", lam=10.0, pgd_steps=3)
    train.fit(er, data, epochs=6, batch_size=64, seed=0)
    mat_none = detect.prepare_material(undefended.model, data.x_train, data.y_train, data.x_test, data.y_test, ATTACKS)
    mat_er = detect.prepare_material(er.model, data.x_train, data.y_train, data.x_test, data.y_test, ATTACKS)
    material = {"kd": mat_none, "lid": mat_none, "er1": mat_er, "er2": mat_er}
    rows = detect.detection_matrix(material, dataset="digits")
    return data, undefended, er, material, rows


def _row(rows, detector, fit, test):
    (row,) = [r for r in rows if (r["detector"], r["fit_attack"], r["test_attack"]) == (detector, fit, test)]
    return row


@pytest.mark.parametrize("detector", ["kd", "lid", "er1", "er2"])
def test_each_detector_separates_pgd_from_natural_on_set_two(digits_run, detector):
    *_, rows = digits_run
    row = _row(rows, detector, "pgd", "pgd")
    assert row["n_adv"] == 288 and row["n_nat"] == 288  # set II is 80 % of digits' 360
    assert row["acc_adv"] >= 0.6, row
    assert row["acc_nadv"] >= 0.6, row


def test_familiar_and_cross_tables_cover_every_pair(digits_run):
    *_, rows = digits_run
    familiar = {(r["detector"], r["fit_attack"]) for r in rows if r["fit_attack"] == r["test_attack"]}
    assert familiar == {(d, a) for d in detect.DETECTORS for a in ATTACKS}
    cross = {(r["detector"], r["fit_attack"], r["test_attack"]) for r in rows if r["fit_attack"] != r["test_attack"]}
    assert cross == {(d, f, t) for d in detect.DETECTORS for f in ATTACKS for t in ATTACKS if f != t}
    for r in rows:
        assert r["fit_seconds"] > 0 and r["score_seconds"] > 0
        # ACC-COM counts detected plus undetected-but-correct: never below ACC-ADV.
        assert r["acc_com"] >= r["acc_adv"] - 1e-12
    # ACC-NADV depends only on the fitted detector, not on the test attack.
    for d in detect.DETECTORS:
        for f in ATTACKS:
            assert len({_row(rows, d, f, t)["acc_nadv"] for t in ATTACKS}) == 1


def test_familiar_and_cross_table_functions(digits_run):
    *_, material, _rows = digits_run
    small = {"er1": material["er1"]}
    fam = detect.familiar_attack_table(small, dataset="digits")
    cross = detect.cross_attack_table(small, dataset="digits")
    assert {(r["fit_attack"], r["test_attack"]) for r in fam} == {(a, a) for a in ATTACKS}
    assert {(r["fit_attack"], r["test_attack"]) for r in cross} == {(f, t) for f in ATTACKS for t in ATTACKS if f != t}


def test_cw_examples_respect_the_rms_bound(digits_run):
    *_, material, _rows = digits_run
    mat = material["er1"]
    adv = mat.adv_eval["cw_l2"]
    delta = (adv.x_adv - mat.x_eval[adv.index]).flatten(1)
    rms = delta.norm(dim=1) / math.sqrt(delta.shape[1])
    assert rms.max().item() <= 0.007 + 1e-6
    # FGSM at ε 0.3 fools an undefended net nearly always: the adversarial sets are real.
    assert material["kd"].adv_eval["fgsm"].correct.float().mean().item() < 0.2


def test_detector_interface_fit_score_predict(digits_run):
    data, _undefended, er, material, _rows = digits_run
    mat = material["er2"]
    det = detect.make("er2", dataset="digits").fit(er.model, data.x_train, data.y_train, mat.x_fit,
                                                    mat.adv_fit["pgd"].x_adv)
    scores = det.score(mat.x_eval)
    assert scores.shape == (len(mat.x_eval),) and ((0 <= scores) & (scores <= 1)).all()
    assert np.array_equal(det.predict(mat.x_eval), scores >= det.config.threshold)
    # Adversarial examples score higher on average than natural ones.
    assert det.score(mat.adv_eval["pgd"].x_adv).mean() > scores.mean()


def test_kd_needs_dropout(digits_run):
    data, *_ = digits_run
    no_dropout = methods.make("none", "digits").model
    det = detect.make("kd", dataset="digits").prepare(no_dropout, data.x_train[:200], data.y_train[:200])
    with pytest.raises(ValueError, match="dropout"):
        det.features(data.x_test[:10])
