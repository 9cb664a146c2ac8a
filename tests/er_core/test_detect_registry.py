"""The detector registry, its configs, the passes each detector states, and the per-dataset
detection settings read from er_core.dataset_info (KD's bandwidth, the paper's attacks). One
untrained digits net for the pass counts; well under a second."""

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


def test_each_detector_states_its_passes_from_its_config():
    """What the cost model reads: KD pays each MC-dropout pass, LID its logits and a reference
    minibatch per query minibatch, ER2 the hidden layers beside z; ``max_train`` caps the reference."""
    kd = detect.make("kd", dataset="mnist")
    assert detect.make("kd", dataset="mnist", mc_passes=100).feature_passes() == kd.feature_passes() + 50
    assert detect.make("lid", include_logits=False).feature_passes() < detect.make("lid").feature_passes()
    assert detect.make("er2").feature_passes() > detect.make("er1").feature_passes()
    assert detect.make("lid").reference_passes() == 0
    capped = detect.make("er1", max_train=7)
    assert (capped.reference_size(100), capped.reference_size(5), detect.make("er1").reference_size(100)) == (7, 5, 100)
    with pytest.raises(NotImplementedError):
        detect.Detector(object()).feature_passes()


@pytest.mark.parametrize("name", ["kd", "lid", "er1", "er2"])
def test_stated_passes_bound_what_prepare_and_features_run(name):
    """Count the images that pass through the net's first block: ``prepare`` (without labels, so
    it predicts them) and ``features`` stay within what the detector states."""
    import torch

    from er_core.methods import make

    model = make("none", "digits", dropout=0.5).model
    seen = []
    model.blocks[0].register_forward_hook(lambda _m, inputs, _out: seen.append(len(inputs[0])))
    options = {"minibatch": 30, "k": 5} if name == "lid" else {}
    detector = detect.make(name, dataset="digits", max_train=90, **options)
    x_train = torch.rand(120, 1, 8, 8)
    detector.prepare(model, x_train, None)
    assert sum(seen) <= detector.reference_passes() * detector.reference_size(len(x_train))
    seen.clear()
    x = torch.rand(60, 1, 8, 8)  # whole LID minibatches
    detector.features(x)
    assert 0 < sum(seen) <= detector.feature_passes() * len(x)
