"""GridSpec: validation errors name the field, expansion counts, stable trial ids, round trips."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grid.run.cost import gpu_hours_estimate
from grid.spec import GridSpec, TrialConfig

REPO = Path(__file__).resolve().parents[3]


def base_spec() -> dict:
    return {
        "experiment": "unit",
        "datasets": ["digits", "mnist"],
        # none: no axes; madry: train ε only; er: train ε and λ; er_minus: λ only.
        "methods": ["none", "madry", "er", "er_minus"],
        "train_eps": {"digits": [0.1, 0.2], "mnist": [0.3]},
        "lams": [1.0, 10.0],
        "seeds": [0, 1],
        "epochs": 2,
        "eval_plan": {
            "digits": [
                {"attack": "pgd", "eps": {"start": 0.0, "stop": 0.4, "step": 0.025}, "options": {"steps": 5}},
                {"attack": "fgsm", "eps": [0.1]},
            ],
            "mnist": [{"attack": "fgsm", "eps": 0.3}],
        },
        "eval_n": {"digits": 300, "mnist": 1000},
        "eval_batch_size": 128,
        "resources": {"mnist": {"cpu": 2, "gpu": 0.25}},
    }


def test_expansion_counts_follow_the_axes_each_method_uses():
    trials = GridSpec.from_dict(base_spec()).expand()
    # Per dataset: none S + madry E·S + er E·L·S + er_minus L·S, with L = 2 λ, S = 2 seeds.
    # digits (E = 2): 2 + 4 + 8 + 4 = 18; mnist (E = 1): 2 + 2 + 4 + 4 = 12.
    assert len(trials) == 30
    by = {(t.dataset, t.method): [] for t in trials}
    for t in trials:
        by[(t.dataset, t.method)].append(t)
    assert [len(by[("digits", m)]) for m in ("none", "madry", "er", "er_minus")] == [2, 4, 8, 4]
    assert [len(by[("mnist", m)]) for m in ("none", "madry", "er", "er_minus")] == [2, 2, 4, 4]
    assert all(t.train_eps is None and t.lam is None for t in by[("digits", "none")])
    assert all(t.lam is None and t.train_eps in (0.1, 0.2) for t in by[("digits", "madry")])
    assert all(t.train_eps is None and t.lam in (1.0, 10.0) for t in by[("mnist", "er_minus")])
    assert len({t.trial_id for t in trials}) == len({t.name for t in trials}) == 30
    mnist = by[("mnist", "none")][0]
    assert mnist.resources == {"cpu": 2, "gpu": 0.25} and by[("digits", "none")][0].resources == {"cpu": 1, "gpu": 0}
    assert mnist.eval_n == 1000 and by[("digits", "none")][0].eval_n == 300


def test_eps_range_is_inclusive_and_exact():
    spec = GridSpec.from_dict(base_spec())
    pgd = [item.eps for item in spec.eval_plan["digits"] if item.attack == "pgd"]
    assert len(pgd) == 17 and pgd[0] == 0.0 and pgd[-1] == 0.4
    assert 0.075 in pgd  # not 0.07500000000000001
    trial = spec.expand()[0]
    assert trial.num_eval_batches == 3  # ceil(300 / 128)
    assert len(trial.eval_batches()) == 18 * 3


def test_method_hyperparams_merge_axes():
    spec = copy.deepcopy(base_spec())
    spec["hyperparams"] = {"er": {"lr": 0.01}}
    er = next(t for t in GridSpec.from_dict(spec).expand() if t.method == "er")
    assert er.method_hyperparams() == {"init_seed": er.seed, "lr": 0.01, "lam": 1.0, "train_eps": 0.1, "recipe": "adam"}

    # The trial's seed seeds the initial weights unless the spec pins init_seed.
    spec["hyperparams"] = {"er": {"init_seed": 7}}
    spec["seeds"] = [0, 1]
    pinned = [t for t in GridSpec.from_dict(spec).expand() if t.method == "er"]
    assert {t.method_hyperparams()["init_seed"] for t in pinned} == {7}


def _with(path: str, value):
    spec = copy.deepcopy(base_spec())
    node = spec
    keys = path.split(".")
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return spec


BAD_SPECS = [
    (_with("methods", ["none", "foo"]), "spec.methods: unknown method 'foo'; valid: "),
    (_with("datasets", ["digits", "imagenet"]), "spec.datasets: unknown dataset 'imagenet'"),
    (_with("eval_plan.digits", [{"attack": "bim", "eps": [0.1]}]), "spec.eval_plan.digits[0].attack: unknown attack 'bim'"),
    (_with("eval_plan.digits", [{"attack": "pgd", "eps": [0.1], "options": {"stepz": 3}}]), "spec.eval_plan.digits[0].options"),
    (_with("train_eps.digits", [0.1, 1.5]), "spec.train_eps.digits[1]: 1.5 is outside [0.0, 1.0]"),
    (_with("eval_plan.mnist", [{"attack": "fgsm", "eps": [-0.1]}]), "spec.eval_plan.mnist[0].eps[0]"),
    (_with("seeds", []), "spec.seeds: empty"),
    (_with("lams", []), "spec.lams: empty"),
    (_with("methods", []), "spec.methods: empty"),
    (_with("colour", "blue"), "spec.colour: unknown field"),
    (_with("resources", {"cpu": 1, "gpu": 0.3}), "spec.resources.digits.gpu: fraction 0.3 does not divide 1"),
    (_with("resources", {"cpu": 1, "gpu": 1.5}), "spec.resources.digits.gpu: more than one GPU must be a whole number"),
    (_with("resources", {"cpu": -1}), "spec.resources.digits.cpu: must be > 0"),
    (_with("resources", {"mnist": {"gpu": 1, "tpu": 1}}), "spec.resources.mnist: unknown resource(s) ['tpu']"),
    (_with("num_nodes", 2), "spec.storage_path: 'results' is a local path but num_nodes=2"),
    (_with("train_eps", {"digits": [0.1]}), "spec.train_eps: no training ε for dataset(s) ['mnist']"),
    (_with("hyperparams", {"er": {"lam": 3}}), "spec.hyperparams.er: ['lam'] are grid axes"),
    (_with("hyperparams", {"er": {"learning_rate": 3}}), "spec.hyperparams.er: unknown hyperparameter(s) ['learning_rate']"),
    (_with("experiment", "a/b"), "spec.experiment: 'a/b' is not a valid name"),
    (_with("eval_n", 1000), "spec.eval_n: 1000 examples requested but dataset 'digits' has 360"),
    (_with("epochs", 0), "spec.epochs: expected an integer ≥ 1"),
    # The codes plan: base_spec sweeps PGD on digits only (mnist: FGSM).
    (_with("codes", {"eps": {"mnist": "third"}}),
     'spec.codes.eps.mnist: expected a number in (0, 1], "half" or "auto", got \'third\''),
    (_with("codes", {"eps": {"mnist": 0}}), "spec.codes.eps.mnist: expected a number in (0, 1]"),
    (_with("codes", {"eps": {"mnist": True}}), "spec.codes.eps.mnist: expected a number in (0, 1]"),
    (_with("codes", {"eps": {"imagenet": 0.1}}), "spec.codes.eps: dataset 'imagenet' is not in spec.datasets"),
    (_with("codes", {"eps": "third"}), "spec.codes.eps: unknown rule 'third'; valid: half, auto"),
    (_with("codes", {"eps": 0.3}), "spec.codes.eps: expected a rule (half, auto) or a dict dataset → ε or rule"),
    (_with("codes", {"eps": {"mnist": "half"}}), 'spec.codes.eps.mnist: "half" chooses among the nonzero ε of the pgd'),
    (_with("codes", {"eps": "half"}), 'spec.codes.eps.mnist: "half" chooses among the nonzero ε of the pgd'),
    (_with("codes", {"steps": 0}), "spec.codes.steps: expected an integer ≥ 1"),
    (_with("codes", {"epz": 0.1}), "spec.codes.epz: unknown field"),
    (_with("codes", "yes"), "spec.codes: expected true, false or {steps, eps}"),
]


@pytest.mark.parametrize("spec, message", BAD_SPECS, ids=[m.split(":")[0] + f"-{i}" for i, (_, m) in enumerate(BAD_SPECS)])
def test_invalid_spec_names_the_field(spec, message):
    with pytest.raises(ValueError) as err:
        GridSpec.from_dict(spec)
    assert message in str(err.value)


def test_shared_storage_allows_multi_node():
    spec = _with("num_nodes", 4)
    spec["storage_path"] = "s3://bucket/er"
    assert GridSpec.from_dict(spec).num_nodes == 4


_PRINT_IDS = """
import json, sys
from grid.spec import GridSpec
spec = GridSpec.from_dict(json.loads(sys.argv[1]))
print(json.dumps([t.trial_id for t in spec.expand()]))
"""


def test_trial_id_is_stable_across_processes():
    spec = base_spec()
    ids_here = [t.trial_id for t in GridSpec.from_dict(spec).expand()]
    # Another interpreter with a different string-hash seed must give the same ids.
    env = dict(os.environ, PYTHONHASHSEED="12345")
    out = subprocess.run(
        [sys.executable, "-c", _PRINT_IDS, json.dumps(spec)], cwd=REPO, env=env,
        capture_output=True, text=True, check=True, timeout=120,
    )
    assert json.loads(out.stdout.strip().splitlines()[-1]) == ids_here
    assert all(len(i) == 10 and int(i, 16) >= 0 for i in ids_here)


def test_trial_id_ignores_where_a_trial_runs_but_not_what_it_computes():
    trial = GridSpec.from_dict(base_spec()).expand()[0]
    d = trial.to_dict()
    moved = TrialConfig.from_dict({**d, "resources": {"cpu": 8, "gpu": 1}, "data_root": "/elsewhere"})
    assert moved.trial_id == trial.trial_id
    assert TrialConfig.from_dict({**d, "seed": 7}).trial_id != trial.trial_id
    assert TrialConfig.from_dict({**d, "eval_n": 100}).trial_id != trial.trial_id


def test_trial_config_round_trips_through_plain_json():
    for trial in GridSpec.from_dict(base_spec()).expand()[:6]:
        back = TrialConfig.from_dict(json.loads(json.dumps(trial.to_dict())))
        assert back == trial and back.trial_id == trial.trial_id and back.name == trial.name


def test_trial_attacks_are_attack_specs_through_plain_json():
    """The evaluation plan is AttackSpecs and the codes stage a CodesPlan, both the same after
    Tune's plain-JSON round trip; the codes stage does not change trial_id."""
    from er_core.attack_spec import AttackSpec
    from grid.spec.codes_plan import CodesPlan

    spec = GridSpec.from_dict(dict(base_spec(), codes={"steps": 7, "eps": {"mnist": 0.2}}))
    trials = spec.expand()
    for trial in [*trials[:4], *trials[-4:]]:  # digits ("half") and mnist (the spec's 0.2)
        back = TrialConfig.from_dict(json.loads(json.dumps(trial.to_dict())))
        assert all(isinstance(item, AttackSpec) for item in back.eval_plan)
        assert isinstance(back.codes, CodesPlan) and back.codes == trial.codes and back.codes.steps == 7
        assert back.trial_id == trial.trial_id
    without = GridSpec.from_dict(base_spec()).expand()[0]
    assert without.codes is None and without.trial_id == spec.expand()[0].trial_id


def test_codes_rules_per_trial():
    """``true`` ("auto"): "half" where the trial sweeps PGD at ≥ 2 nonzero ε (digits), else the
    dataset's training ε (mnist: FGSM only); an explicit rule or number per dataset wins."""
    from er_core.dataset_info import info
    from grid.spec.codes_plan import AUTO, GIVEN, HALF, TRAIN_EPS, CodesPlan

    def plans(codes, spec=None) -> dict:
        return {t.dataset: t.codes for t in GridSpec.from_dict(dict(spec or base_spec(), codes=codes)).expand()}

    assert GridSpec.from_dict(dict(base_spec(), codes=True)).codes == {"steps": 40, "eps": {"digits": AUTO, "mnist": AUTO}}
    assert plans(True) == {"digits": CodesPlan(HALF, 40), "mnist": CodesPlan(TRAIN_EPS, 40, info("mnist").train_eps)}
    assert plans({"eps": {"digits": 0.05}}) == {"digits": CodesPlan(GIVEN, 40, 0.05),
                                                "mnist": CodesPlan(TRAIN_EPS, 40, info("mnist").train_eps)}
    # PGD at one nonzero ε (and at 0): "auto" keeps the training ε, an explicit "half" uses the sweep.
    one = _with("eval_plan.mnist", [{"attack": "pgd", "eps": [0.0, 0.1]}])
    assert plans(True, one)["mnist"] == CodesPlan(TRAIN_EPS, 40, info("mnist").train_eps)
    assert plans({"eps": "half", "steps": 5}, one) == {"digits": CodesPlan(HALF, 5), "mnist": CodesPlan(HALF, 5)}
    # The normalised spec reads back as itself, rules and numbers alike.
    for codes in (True, {"eps": "half"}, {"eps": {"digits": "half", "mnist": 0.25}, "steps": 3}):
        spec = GridSpec.from_dict(dict(one, codes=codes))
        assert GridSpec.from_dict(spec.to_dict()) == spec


def test_a_codes_plan_recorded_as_an_attack_spec_reads_back_as_a_fixed_eps():
    """Trial configs recorded before the rule existed hold the codes attack as an AttackSpec
    dict; a resume reads them back as that ε, as given."""
    from grid.spec.codes_plan import GIVEN, CodesPlan

    trial = GridSpec.from_dict(dict(base_spec(), codes=True)).expand()[0]
    old = dict(trial.to_dict(), codes={"attack": "pgd", "eps": 0.3, "options": {"steps": 40}})
    back = TrialConfig.from_dict(old)
    assert back.codes == CodesPlan(GIVEN, 40, 0.3) and back.trial_id == trial.trial_id
    with pytest.raises(ValueError, match="codes plan: rule 'half' takes no ε"):
        CodesPlan("half", 40, 0.3)
    with pytest.raises(ValueError, match="codes_plan.eps_rule: unknown field"):
        CodesPlan.from_dict({"rule": "half", "steps": 40, "eps_rule": 1})


def _job_presets() -> dict:
    sys.path.insert(0, str(REPO / "jobs"))
    try:
        import full_grid
    finally:
        sys.path.remove(str(REPO / "jobs"))
    return {"paper": full_grid.PAPER, "smoke": full_grid.SMOKE}


def test_the_codes_plan_leaves_the_job_presets_trial_ids_alone():
    """The codes plan is not hashed: every form of it gives each preset the trial ids it has
    without the stage, so adding the rule retrains nothing."""
    for name, preset in _job_presets().items():
        bare = [t.trial_id for t in GridSpec.from_dict(dict(preset, codes=False)).expand()]
        for codes in (preset.get("codes", False), True, {"eps": "half"}, {"eps": "auto", "steps": 7},
                      {"eps": {d: 0.01 for d in preset["datasets"]}}):
            trials = GridSpec.from_dict(dict(preset, codes=codes)).expand()
            assert [t.trial_id for t in trials] == bare, (name, codes)
        if preset.get("codes"):  # the paper preset sweeps PGD everywhere: the 50% rule throughout
            assert {t.codes.rule for t in GridSpec.from_dict(preset).expand()} == {"half"}


def test_the_codes_stage_costs_the_same_passes_whatever_its_rule():
    """PGD's passes do not depend on ε: a "half" plan is priced like a fixed ε."""
    from grid.run.cost import trial_cost

    def cost(codes):
        return trial_cost(GridSpec.from_dict(dict(base_spec(), codes=codes)).expand()[0])

    half, fixed, off = cost({"eps": {"digits": "half"}}), cost({"eps": {"digits": 0.1}}), cost(False)
    assert half == fixed and half.eval_seconds > off.eval_seconds


def test_yaml_and_dict_give_the_same_spec(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(base_spec()))
    spec = GridSpec.from_yaml(path)
    assert spec == GridSpec.from_dict(base_spec())
    assert GridSpec.from_dict(spec.to_dict()) == spec
    plain = GridSpec.from_dict({k: v for k, v in base_spec().items() if k not in ("lams", "train_eps")}
                               | {"methods": ["none", "rse"]})
    assert plain.lams is None and GridSpec.from_dict(plain.to_dict()) == plain
    assert len(plain.expand()) == 2 * 2 * 2  # datasets × methods × seeds


def test_gpu_hours_grow_with_epochs_and_adversarial_training():
    trials = GridSpec.from_dict(base_spec()).expand()
    longer = GridSpec.from_dict(_with("epochs", 20)).expand()
    assert 0 < gpu_hours_estimate(trials) < gpu_hours_estimate(longer)
    plain = next(t for t in trials if t.method == "none" and t.dataset == "mnist")
    adv = next(t for t in trials if t.method == "madry" and t.dataset == "mnist")
    assert gpu_hours_estimate([adv]) > gpu_hours_estimate([plain])
