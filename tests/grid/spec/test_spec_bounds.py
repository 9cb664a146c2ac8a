"""Bounds checked up front (issue 21, item 5): seeds in [0, 2**32), Ray's smallest resource share,
experiment names matched whole, the size of a spec file, YAML aliases and nesting, the number
of trials. Each is one ValueError naming the field, raised before anything is expanded.
Runtime: ~1 s."""

from __future__ import annotations

import copy
import time

import pytest

from grid.spec import GridSpec, load_yaml
from grid.spec.checks import MAX_SPEC_BYTES
from grid.spec.validation import MAX_TRIALS


def spec(**changes) -> dict:
    base = {
        "experiment": "bounds",
        "datasets": ["digits"],
        "methods": ["none"],
        "seeds": [0],
        "epochs": 1,
        "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
        "eval_n": 20,
    }
    base.update(copy.deepcopy(changes))
    return base


def refused(raw: dict) -> str:
    with pytest.raises(ValueError) as err:
        GridSpec.from_dict(raw)
    return str(err.value)


@pytest.mark.parametrize("changes, field", [
    ({"seeds": [0, 2 ** 32]}, "spec.seeds[1]"),
    ({"seeds": {"digits": [2 ** 40]}}, "spec.seeds.digits[0]"),
    ({"eval_seed": 2 ** 32}, "spec.eval_seed"),
    ({"hyperparams": {"none": {"init_seed": 2 ** 33}}}, "spec.hyperparams.none.init_seed"),
])
def test_seeds_outside_32_bits_are_refused(changes, field):
    message = refused(spec(**changes))
    assert message.startswith(f"{field}:") and "2**32" in message


def test_largest_32_bit_seed_is_accepted():
    grid = GridSpec.from_dict(spec(seeds=[2 ** 32 - 1], eval_seed=2 ** 32 - 1))
    assert [t.seed for t in grid.expand()] == [2 ** 32 - 1]


def test_detection_split_seed_is_a_seed_too():
    raw = spec(methods=["none"], hyperparams={"none": {"dropout": 0.5}},
               detection={"digits": {"detectors": ["kd"], "split_seed": 2 ** 32,
                                     "attacks": [{"attack": "fgsm", "eps": 0.1}]}})
    assert refused(raw).startswith("spec.detection.digits.split_seed:")


@pytest.mark.parametrize("resources, field", [
    ({"cpu": 1e-9}, "spec.resources.digits.cpu"),
    ({"cpu": 1, "gpu": 1e-5}, "spec.resources.digits.gpu"),
])
def test_resource_shares_below_rays_granularity_are_refused(resources, field):
    message = refused(spec(resources=resources))
    assert message.startswith(f"{field}:") and "smallest share" in message


def test_smallest_share_ray_keeps_is_accepted():
    grid = GridSpec.from_dict(spec(resources={"cpu": 0.0001, "gpu": 0}))
    assert grid.expand()[0].resources == {"cpu": 0.0001, "gpu": 0}


@pytest.mark.parametrize("name", ["abc\n", "abc\n\n", "\nabc", "abc def"])
def test_experiment_name_is_matched_whole(name):
    assert refused(spec(experiment=name)).startswith("spec.experiment:")


def test_a_huge_seed_list_is_one_error_before_expansion():
    started = time.perf_counter()
    message = refused(spec(seeds=list(range(40_000))))
    assert message.startswith("spec.seeds:") and "40,000" in message and f"{MAX_TRIALS:,}" in message
    assert time.perf_counter() - started < 5  # generous: it was > 45 s before the bound


def test_axes_multiplying_past_the_trial_bound_are_one_error():
    raw = spec(methods=["none", "madry"], train_eps={"digits": [round(0.001 * i, 3) for i in range(1, 101)]},
               seeds=list(range(101)))
    message = refused(raw)
    assert message.startswith("spec.seeds:") and "10,201 trials" in message


def test_a_spec_file_over_the_size_bound_is_refused_before_parsing():
    text = "experiment: big\n" + "# padding\n" * (MAX_SPEC_BYTES // 10 + 1)
    with pytest.raises(ValueError, match=r"^spec: big.yaml holds [\d,]+ characters"):
        load_yaml(text, "big.yaml")
    # 50 MB of it: refused at once (never handed to the YAML parser, which would take minutes).
    started = time.perf_counter()
    with pytest.raises(ValueError, match="a spec file is at most"):
        load_yaml("x" * (50 << 20), "huge.yaml")
    assert time.perf_counter() - started < 5


def test_a_yaml_alias_bomb_is_refused_at_the_first_alias():
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        previous = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [{', '.join([f'*{previous}'] * 9)}]")
    with pytest.raises(ValueError, match="uses a YAML alias at line 2"):
        load_yaml("\n".join(lines), "bomb.yaml")


def test_an_alias_anywhere_is_refused_and_a_plain_spec_still_loads():
    with pytest.raises(ValueError, match="alias"):
        load_yaml("seeds: &s [0, 1]\nother: *s\n", "s.yaml")
    assert load_yaml("experiment: plain\nseeds: [0, 1]\n", "p.yaml") == {"experiment": "plain", "seeds": [0, 1]}


def test_yaml_nested_past_the_depth_bound_is_one_error_not_a_recursion_error():
    with pytest.raises(ValueError, match="nests deeper than 32 levels"):
        load_yaml("x: " + "[" * 5000 + "]" * 5000, "deep.yaml")
