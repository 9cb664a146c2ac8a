"""Every registry entry is complete: datasets, methods, attacks and detectors.

Adding a dataset, method, attack or detector means adding one record or one registry line; these tests
fail when that entry leaves a field unset, out of range or inconsistent with the others.
"""

import dataclasses
import math
import sys

import pytest

from er_core import data
from er_core.attacks import ATTACKS
from er_core.attacks import make as make_attack
from er_core.dataset_info import INFO, DatasetInfo
from er_core.methods import METHODS
from er_core.methods.base import FROM_RECIPE, PER_DATASET, Param, resolve
from er_core.recipes import RECIPES, Recipe


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_positive_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value > 0


# ---------------------------------------------------------------- datasets


@pytest.mark.parametrize("name", sorted(INFO))
def test_every_dataset_record_is_complete(name):
    record = INFO[name]
    assert record.name == name
    assert isinstance(record.display_name, str) and record.display_name.strip()
    for size in ("channels", "height", "width", "train_size", "test_size", "code_dim"):
        assert _is_int(getattr(record, size)) and getattr(record, size) >= 1, size
    assert _is_int(record.num_classes) and record.num_classes >= 2
    assert record.shape == (record.channels, record.height, record.width)
    assert len(record.mean) == len(record.std) == record.channels
    assert all(0.0 < m < 1.0 for m in record.mean) and all(0.0 < s < 1.0 for s in record.std)
    assert record.normalization == (record.mean, record.std)
    # The code is a bottleneck: far smaller than the image it encodes.
    assert record.code_dim < record.channels * record.height * record.width
    assert 0.0 < record.train_eps <= 1.0 and 0.0 < record.paper_eps <= 1.0
    assert _is_int(record.pgd_steps) and record.pgd_steps >= 1
    assert _is_int(record.eps_warmup_epochs) and record.eps_warmup_epochs >= 0
    assert _is_positive_number(record.epoch_seconds)
    assert isinstance(record.on_device, bool)
    for optional in ("kd_bandwidth", "detection_cw_rms"):
        value = getattr(record, optional)
        assert value is None or _is_positive_number(value), optional


def test_every_dataset_has_a_loader_and_nothing_else_does():
    assert data.INFO is INFO  # one table, re-exported
    assert set(data.LOADERS) == set(INFO)
    for name, loader in data.LOADERS.items():
        assert callable(loader.load) and loader.expected.strip(), name


# ---------------------------------------------------------------- methods


def test_param_check_uses_its_own_bounds_and_choices():
    """The check every method setting goes through: inclusive bounds, numbers only, choices."""
    bounded = Param(1, "a count", low=1, high=3)
    for ok in (1, 2, 3, 2.5):
        bounded.check("m", "k", ok)
    for bad in (0, 4, True, "2", None, float("nan")):
        with pytest.raises(ValueError, match=r"m: hyperparameter k=.* must be a number in \[1, 3\]"):
            bounded.check("m", "k", bad)
    with pytest.raises(ValueError, match=r"must be a number in \[0.0, inf\]"):
        Param(1.0, "a rate", low=0.0).check("m", "k", -1e-9)
    named = Param("a", "an option", choices=("a", "b"))
    named.check("m", "k", "b")
    with pytest.raises(ValueError, match=r"m: k must be one of \['a', 'b'\], got 'c'"):
        named.check("m", "k", "c")
    Param(None, "anything goes").check("m", "k", object())


@pytest.mark.parametrize("key", sorted(METHODS))
def test_every_method_entry_is_complete(key):
    cls = METHODS[key]
    assert cls.name == key
    assert isinstance(cls.display_name, str) and cls.display_name.strip() and cls.display_name != "method"
    assert sys.modules[cls.__module__].__doc__.strip()
    record_fields = {f.name for f in dataclasses.fields(DatasetInfo)}
    for setting, param in cls.PARAMS.items():
        assert isinstance(param, Param), setting
        assert isinstance(param.doc, str) and param.doc.strip(), setting
        if isinstance(param.default, str):
            # A setting that names an option lists its options, so a typo fails at once.
            assert param.choices and param.default in param.choices, setting
        if param.low is not None and param.high is not None:
            assert param.low <= param.high, setting
        if param.default is PER_DATASET:
            assert setting in record_fields, f"{setting}: PER_DATASET needs a DatasetInfo field of that name"
        elif param.default is FROM_RECIPE:
            assert setting in Recipe.HYPERPARAMS, f"{setting}: FROM_RECIPE needs a Recipe field of that name"
        else:
            param.check(key, setting, param.default)
    for dataset in INFO:
        resolved = resolve(cls, dataset, {})  # checks every resolved default against its Param
        for setting, param in cls.PARAMS.items():
            if param.default is PER_DATASET:
                assert resolved[setting] == getattr(INFO[dataset], setting)
                param.check(key, setting, resolved[setting])
            if param.default is FROM_RECIPE:
                assert resolved[setting] == getattr(RECIPES[INFO[dataset].recipe], setting)


# ---------------------------------------------------------------- attacks


@pytest.mark.parametrize("name", sorted(ATTACKS))
def test_every_attack_builds_with_its_defaults_and_is_documented(name):
    cls = ATTACKS[name]
    assert cls.name == name
    # One file per attack: its module docstring is the attack's documentation.
    assert sys.modules[cls.__module__].__doc__.strip()
    for dataset in INFO.values():
        attack = make_attack(name, eps=dataset.paper_eps)
        config = attack.config()
        assert config["attack"] == name and config["eps"] == dataset.paper_eps
        assert config["norm"] in ("Linf", "L2")
        # The cost model prices every attack by what it states it spends per example.
        passes = attack.gradient_passes()
        assert _is_positive_number(passes), f"{name}: gradient_passes() must be a positive number"
    with pytest.raises(ValueError, match="eps"):
        make_attack(name, eps=1.5)


# ---------------------------------------------------------------- detectors


@pytest.mark.parametrize("name", ["kd", "lid", "er1", "er2"])
def test_every_detector_entry_is_complete(name):
    from er_core import detect

    assert set(detect.DETECTORS) == {"kd", "lid", "er1", "er2"}
    cls = detect.DETECTORS[name]
    assert cls.name == name
    assert (cls.__doc__ or "").strip(), f"{name}: the detector class says what it computes"
    assert dataclasses.is_dataclass(cls.config_cls), f"{name}: its settings are one config dataclass"
    # Published defaults build for every dataset, and per-dataset defaults (KD's bandwidth) follow
    # the dataset's record.
    for dataset in INFO:
        config = detect.default_config(name, dataset)
        assert isinstance(config, cls.config_cls)
        assert isinstance(detect.make(name, dataset=dataset), cls)
        # The cost model prices the detection stage by what each detector states it spends.
        detector = detect.make(name, dataset=dataset)
        assert _is_positive_number(detector.feature_passes()), f"{name}: feature_passes() must be a positive number"
        reference = detector.reference_passes()
        assert reference == 0 or _is_positive_number(reference), f"{name}: reference_passes() must be a number ≥ 0"
    if name == "kd":
        for dataset, record in INFO.items():
            if record.kd_bandwidth is not None:
                assert detect.default_config(name, dataset).bandwidth == record.kd_bandwidth
