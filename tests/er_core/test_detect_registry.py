"""The detector registry, its configs, and the per-dataset detection settings read from
er_core.dataset_info (KD's bandwidth, the paper's attacks). No model; well under a second."""

from __future__ import annotations

import dataclasses

import pytest

from er_core import dataset_info, detect
from er_core.attack_spec import AttackSpec


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


def test_paper_attacks_are_section_4_5_1s():
    """FGSM and PGD at ε 0.3 (MNIST, and digits with it) / 0.03 (CIFAR10), C&W-ℓ2 bounded at RMS
    0.007 / 0.004; a dataset without settings is one error naming those that have them."""
    for dataset, eps, bound in [("mnist", 0.3, 0.007), ("digits", 0.3, 0.007), ("cifar10", 0.03, 0.004)]:
        assert detect.paper_attacks(dataset) == {
            "fgsm": AttackSpec("fgsm", eps), "pgd": AttackSpec("pgd", eps), "cw_l2": AttackSpec("cw_l2", bound),
        }
    for dataset in ("stl10", "nope"):
        with pytest.raises(ValueError, match=f"no detection attack settings for dataset '{dataset}'; "
                                             "valid: digits, mnist, cifar10$"):
            detect.paper_attacks(dataset)


def test_paper_attacks_and_kd_defaults_follow_the_dataset_record(monkeypatch):
    """Both read the dataset's DatasetInfo record at call time: change the record, they follow."""
    info = dataset_info.INFO
    # digits has no published KD bandwidth: standardised features and Scott's rule.
    assert detect.default_config("kd", "digits") == detect.KDConfig(bandwidth="scott", standardize=True)
    monkeypatch.setitem(info, "digits", dataclasses.replace(
        info["digits"], paper_eps=0.25, detection_cw_rms=0.005, kd_bandwidth=0.7))
    monkeypatch.setitem(info, "mnist", dataclasses.replace(info["mnist"], kd_bandwidth=None))
    monkeypatch.setitem(info, "cifar10", dataclasses.replace(info["cifar10"], detection_cw_rms=None))
    assert {name: (s.attack, s.eps) for name, s in detect.paper_attacks("digits").items()} == {
        "fgsm": ("fgsm", 0.25), "pgd": ("pgd", 0.25), "cw_l2": ("cw_l2", 0.005)}
    with pytest.raises(ValueError, match="dataset 'cifar10'; valid: digits, mnist$"):
        detect.paper_attacks("cifar10")
    kd_digits = detect.make("kd", dataset="digits").config
    assert kd_digits.bandwidth == 0.7 and not kd_digits.standardize
    assert detect.default_config("kd", "mnist") == detect.KDConfig(bandwidth="scott", standardize=True)
    # Only KD has per-dataset defaults.
    assert detect.default_config("er1", "digits") == detect.ERConfig()
