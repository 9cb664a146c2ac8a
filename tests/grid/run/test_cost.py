"""The cost estimate a user plans with: measured per-epoch costs, wall time on G GPUs, storage,
calibration from trial rows (``er-grid status``'s time left: test_estimate.py). No Ray; ~3 s."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from grid.run import cost
from grid.cli.job import job_main
from grid.spec import GridSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from full_grid import PAPER, SMOKE  # noqa: E402


def test_measured_epochs_are_reproduced_by_the_model():
    """The issue's H200 measurements: the table and the PGD step factor reproduce them within 10 %."""
    trials = GridSpec.from_dict(PAPER).expand()
    madry = {t.dataset: t for t in trials if t.method == "madry"}
    per_epoch = {d: cost.trial_cost(t).train_seconds / t.epochs for d, t in madry.items()}
    assert per_epoch["mnist"] == pytest.approx(28, rel=0.1)    # PGD-40
    assert per_epoch["cifar10"] == pytest.approx(15, rel=0.1)  # PGD-7


def test_dry_run_prints_gpu_wall_time_and_storage(capsys):
    assert job_main({"paper": PAPER, "smoke": SMOKE}, default="paper", argv=["--dry-run", "--gpus", "8"]) == 0
    text = capsys.readouterr().out
    assert "assumed GPU: NVIDIA H200" in text
    assert "wall time on 8 GPU(s):" in text and "storage:" in text and "checkpoints, 3 per trial" in text
    trials = GridSpec.from_dict(PAPER).expand()
    one, eight = cost.wall_hours(trials, 1), cost.wall_hours(trials, 8)
    longest = max(cost.trial_cost(t).gpu_seconds for t in trials) / 3600
    assert one == pytest.approx(cost.gpu_hours_estimate(trials)) and eight == pytest.approx(max(one / 8, longest))
    # Keeping every epoch's checkpoint costs epochs / 3 times the storage of keeping three.
    every, _ = cost.storage_bytes(trials, None)
    three, _ = cost.storage_bytes(trials, 3)
    assert every == pytest.approx(three * PAPER["epochs"] / 3)
    assert job_main({"paper": PAPER}, default="paper", argv=["--dry-run", "--gpus", "0"]) == 2


def test_paper_dry_run_shows_three_seeds_recipes_and_validation(capsys):
    assert job_main({"paper": PAPER}, default="paper", argv=["--dry-run"]) == 0
    text = capsys.readouterr().out
    lines = {line.split(" training: ")[0]: line for line in text.splitlines() if " training: recipe " in line}
    assert set(lines) == {"mnist", "cifar10", "stl10", "tiny_imagenet"}
    assert "recipe adam" in lines["mnist"] and "seeds [0, 1, 2]" in lines["mnist"]
    assert "recipe sgd_piecewise" in lines["cifar10"] and "seeds [0, 1, 2]" in lines["cifar10"]
    assert "weight_decay 0.0005" in lines["cifar10"] and "augment crop_flip" in lines["cifar10"]
    assert "seeds [0]" in lines["stl10"] and "validation 5000 training images" in lines["mnist"]
    trials = GridSpec.from_dict(PAPER).expand()
    for dataset, seeds in (("mnist", {0, 1, 2}), ("cifar10", {0, 1, 2}), ("stl10", {0})):
        for method in ("madry", "er", "e_cla", "er_minus"):
            assert {t.seed for t in trials if t.dataset == dataset and t.method == method} == seeds


def test_calibration_rescales_from_recorded_epoch_seconds():
    trials = GridSpec.from_dict(SMOKE).expand()
    rows = pd.DataFrame([{
        "trial_id": t.trial_id, "dataset": t.dataset, "method": t.method, "train_eps": t.train_eps,
        # Every trial's epochs took what a 2.0 s clean epoch predicts for it.
        "losses_json": json.dumps([{"seconds": 2.0 * (1 + cost.PGD_STEP_COST * cost.training_steps(t))}] * 3),
    } for t in trials])
    table = cost.calibrate(rows, trials)
    assert table["digits"] == pytest.approx(2.0) and table["mnist"] == cost.epoch_table()["mnist"]
    calibrated = cost.gpu_hours_estimate(trials, table)
    assert calibrated > cost.gpu_hours_estimate(trials)  # 2.0 s per digits epoch vs the table's 0.05 s


def test_keep_checkpoints_is_validated():
    assert GridSpec.from_dict(dict(SMOKE, keep_checkpoints=None)).keep_checkpoints is None
    for bad in (0, 1.5, True, "2"):
        with pytest.raises(ValueError, match="spec.keep_checkpoints"):
            GridSpec.from_dict(dict(SMOKE, keep_checkpoints=bad))
    with pytest.raises(ValueError, match="spec.codes.steps"):
        GridSpec.from_dict(dict(SMOKE, codes={"steps": 0}))


def test_dry_run_calibrates_from_a_stores_trial_rows(tmp_path, capsys):
    from grid.store import ResultStore

    trial = GridSpec.from_dict(SMOKE).expand()[0]  # digits, none: clean training
    ResultStore(str(tmp_path)).write_trial({
        "trial_id": trial.trial_id, "experiment": "smoke", "dataset": "digits", "method": trial.method,
        "train_eps": None, "lam": None, "seed": 0, "epochs": 3, "clean_accuracy": 0.9,
        "losses_json": json.dumps([{"seconds": 4.0}] * 3), "wall_seconds": 12.0, "device": "cpu",
        "checkpoint_hash": "abc", "recipe": "adam", "hyperparams_json": "{}", "validation_n": 0, "evaluate": "last",
        "evaluated_epoch": 3,
    })
    presets = {"smoke": SMOKE}
    assert job_main(presets, default="smoke", argv=["--dry-run"]) == 0
    plain = capsys.readouterr().out
    assert job_main(presets, default="smoke", argv=["--dry-run", "--calibrate", str(tmp_path)]) == 0
    calibrated = capsys.readouterr().out
    assert "per-epoch costs calibrated for digits from 1 trial row(s) on cpu" in calibrated

    def total(text: str) -> float:
        return float(text.split("estimated total: ")[1].split(" GPU-hours")[0].replace(",", ""))

    # 4 s per measured clean epoch instead of the table's 0.05 s: training costs 80× more.
    assert total(calibrated) > 10 * total(plain)
    # The paper grid runs no digits: calibrating it from these rows would change nothing, so
    # that is one line and exit 2, not an estimate that only looks calibrated.
    assert job_main({"paper": PAPER}, default="paper", argv=["--dry-run", "--calibrate", str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1
    assert f"--calibrate: {tmp_path} has trial rows of digits only, and this grid runs mnist" in captured.err


def _attack_passes(item: dict) -> float:
    """The passes per example an evaluation item's attack is priced at on the smoke grid's first
    trial: its evaluation beyond FGSM's (same verdicts, one pass), in units of one pass."""
    def eval_seconds(entry):
        spec = dict(SMOKE, eval_plan={"digits": [entry]})
        return cost.trial_cost(GridSpec.from_dict(spec).expand()[0]).eval_seconds

    one = eval_seconds({"attack": "pgd", "eps": [0.2], "options": {"steps": 2}}) - eval_seconds(
        {"attack": "pgd", "eps": [0.2], "options": {"steps": 1}})
    return (eval_seconds(item) - eval_seconds({"attack": "fgsm", "eps": [0.2]})) / one + 1


def test_a_rays_query_budget_sets_its_evaluation_cost():
    """RayS's ``max_queries`` (forward-only, ~3 per forward+backward pass) drives its estimate:
    10× the budget costs 10× the attack, and without the option RayS's default budget holds."""
    small = _attack_passes({"attack": "rays", "eps": [0.2], "options": {"max_queries": 300}})
    large = _attack_passes({"attack": "rays", "eps": [0.2], "options": {"max_queries": 3000}})
    default = _attack_passes({"attack": "rays", "eps": [0.2]})
    assert small == pytest.approx(100)  # 300 forward-only queries
    assert large == pytest.approx(10 * small)
    assert default == pytest.approx(small * 10_000 / 300)  # RayS's default budget is 10,000 queries


def test_cw_costs_every_binary_search_round():
    """C&W runs up to ``steps`` Adam steps in each of its ``search_steps`` rounds: 9 rounds of
    1,000 steps cost 9× one round, and the paper grid's C&W is priced at steps × rounds."""
    def passes(options):
        return _attack_passes({"attack": "cw_l2", "eps": [0.0], "options": options})

    one_round = passes({"steps": 1000, "search_steps": 1})
    assert passes({"steps": 1000, "search_steps": 9}) == pytest.approx(9 * one_round)
    assert passes({"steps": 100, "search_steps": 9}) == pytest.approx(0.9 * one_round)


def test_codes_storage_follows_the_trials_code_size():
    """The codes stage stores k float32 values per image, natural and adversarial: a trial that
    sets its own code_dim pays for its own k."""
    from er_core.dataset_info import info

    spec = dict(SMOKE, codes=True)
    default = cost.trial_cost(GridSpec.from_dict(spec).expand()[0])
    wider_spec = dict(spec, hyperparams={m: {"code_dim": 64} for m in spec["methods"]})
    wider = cost.trial_cost(GridSpec.from_dict(wider_spec).expand()[0])
    k = info("digits").code_dim
    assert wider.results_bytes - default.results_bytes == pytest.approx(spec["eval_n"] * 2 * 4 * (64 - k))


# ---------------------------------------------------------------- what runs on the trial's model

def _trial(method: str = "none", plan=None, hyperparams=None, detection=None):
    """The smoke grid's one trial of ``method`` on digits, with an evaluation ``plan`` of its own."""
    spec = dict(SMOKE, methods=[method], hyperparams={method: hyperparams} if hyperparams else {},
                detection=detection)
    if plan is not None:
        spec["eval_plan"] = {"digits": plan}
    (trial,) = GridSpec.from_dict(spec).expand()
    return trial


def _eval_seconds(method: str, item: dict, **hyperparams) -> float:
    return cost.trial_cost(_trial(method, [dict(item, eps=[0.1])], hyperparams)).eval_seconds


def _pgd(steps: int) -> dict:
    return {"attack": "pgd", "options": {"steps": steps}}


def _pass_seconds() -> float:
    """What one forward + backward pass over the subset costs, measured on the model itself: one
    PGD step more on a deterministic method."""
    return _eval_seconds("none", _pgd(2)) - _eval_seconds("none", _pgd(1))


def test_rse_pays_its_ensemble_in_every_forward():
    """RSE's eval-mode forward averages ``ensemble`` noisy passes: every attack pass and every
    verdict costs the whole ensemble, and its verdicts are ``passes_for(model)`` forwards each.
    The ensemble is the trial's hyperparameter, else RSE's default; training (one noisy pass in
    train mode) costs what a deterministic method's does."""
    from er_core.evaluate import passes_for
    from er_core.methods import defaults

    ensemble = defaults("rse", "digits")["ensemble"]
    judged = passes_for(SimpleNamespace(randomized=True))
    assert ensemble > 1 and judged > 1
    # Ten more PGD steps: ensemble× on RSE what they cost on a deterministic method.
    none_steps = _eval_seconds("none", _pgd(20)) - _eval_seconds("none", _pgd(10))
    rse_steps = _eval_seconds("rse", _pgd(20)) - _eval_seconds("rse", _pgd(10))
    assert rse_steps == pytest.approx(ensemble * none_steps)
    # What is left beside the attack is the verdicts: judged × ensemble times a deterministic one's.
    none_verdicts = _eval_seconds("none", _pgd(10)) - none_steps
    assert none_verdicts > 0  # the clean and adversarial verdicts, and the trial row's
    rse_verdicts = _eval_seconds("rse", _pgd(10)) - rse_steps
    assert rse_verdicts == pytest.approx(judged * ensemble * none_verdicts)
    # The whole evaluation follows the trial's ensemble; unset, RSE's default holds.
    for item in (_pgd(10), {"attack": "fgsm"}, {"attack": "rays", "options": {"max_queries": 300}}):
        assert _eval_seconds("rse", item, ensemble=2 * ensemble) == pytest.approx(2 * _eval_seconds("rse", item))
        assert _eval_seconds("rse", item, ensemble=ensemble) == pytest.approx(_eval_seconds("rse", item))
    assert cost.trial_cost(_trial("rse")).train_seconds == pytest.approx(cost.trial_cost(_trial("none")).train_seconds)


def test_autoattack_on_rse_runs_the_rand_suite_with_eot():
    """AutoAttack on a randomized model runs pyautoattack's 'rand' suite (APGD-CE and APGD-DLR,
    each gradient the mean of eot_iter noisy passes) through RSE's ensemble: priced from the
    library object the wrapper builds, not as the standard suite's estimate."""
    import torch

    from er_core.attacks import make
    from er_core.attacks.autoattack import build_adversary
    from er_core.methods import defaults

    ensemble = defaults("rse", "digits")["ensemble"]
    rand = build_adversary(torch.nn.Identity(), 0.1, "rand", 0, "cpu", 10)
    apgd = rand.attacks_to_run, rand.apgd
    assert apgd[1].eot_iter > 1
    suite = len(apgd[0]) * apgd[1].n_restarts * (apgd[1].n_iter + 1) * apgd[1].eot_iter  # start gradient + steps
    # Then the larger-EoT probe: APGD-CE with EoT-100 on up to 20 examples of each batch.
    batch = SMOKE["eval_batch_size"]
    suite += min(20, batch) / batch * (apgd[1].n_iter + 1) * 100
    standard = make("autoattack", eps=0.1).gradient_passes()
    one = _pass_seconds()

    def attack_part(method, **options):  # AutoAttack's passes beyond FGSM's one, same verdicts
        aa = _eval_seconds(method, {"attack": "autoattack", "options": options})
        return (aa - _eval_seconds(method, {"attack": "fgsm"})) / one

    forward = {"none": 1, "rse": ensemble}
    assert attack_part("none") == pytest.approx(standard - 1)
    assert attack_part("rse") == pytest.approx(ensemble * suite - ensemble)
    # The version is the attack's rule: forced standard on RSE, forced rand on a deterministic net.
    assert attack_part("rse", version="standard") == pytest.approx(forward["rse"] * (standard - 1))
    assert attack_part("none", version="rand") == pytest.approx(suite - 1)


_DETECTION_ATTACKS = [
    {"attack": "fgsm", "eps": 0.3},
    {"attack": "pgd", "eps": 0.3, "options": {"steps": 10}},
    {"attack": "cw_l2", "eps": 0.007, "options": {"steps": 10, "search_steps": 2}},
]


def _detection(detectors=("kd", "lid"), attacks=None, method="none", **plan):
    methods = {d: [method] for d in detectors}
    detection = {"digits": {"detectors": list(detectors), "attacks": attacks or _DETECTION_ATTACKS,
                            "methods": methods, **plan}}
    return _trial(method, hyperparams={"dropout": 0.5}, detection=detection)


def test_a_detection_plan_costs_what_its_attacks_and_detectors_state():
    """The detection stage crafts each attack on set I and set II (n examples) and labels them,
    then each detector takes its reference over the training images it keeps and its features
    of the natural and every adversarial set: each priced by what it states."""
    import dataclasses

    from er_core import detect
    from er_core.dataset_info import info

    trial = _detection(n=100)
    plan = trial.detection
    with_plan, without = cost.trial_cost(trial), cost.trial_cost(dataclasses.replace(trial, detection=None))
    assert without.detection_seconds == 0 and with_plan.train_seconds == without.train_seconds
    assert with_plan.eval_seconds - without.eval_seconds == pytest.approx(with_plan.detection_seconds)
    n, train_size = 100, info("digits").train_size
    crafting = sum(n * (spec.build().gradient_passes() + cost.FORWARD_PASS) for spec in plan.attacks)
    detectors = [detect.make(d, dataset="digits", **plan.configs.get(d, {})) for d in plan.detectors]
    features = sum(d.reference_size(train_size) * d.reference_passes()
                   + n * (1 + len(plan.attacks)) * d.feature_passes() for d in detectors)
    per_example_pass = _pass_seconds() / SMOKE["eval_n"]
    assert with_plan.detection_seconds == pytest.approx((crafting + features * cost.FORWARD_PASS) * per_example_pass)
    assert with_plan.detection_seconds > 0


def test_detection_cost_follows_n_the_cw_rounds_and_the_model():
    from er_core.dataset_info import info
    from er_core.methods import defaults

    def seconds(**kw):
        return cost.trial_cost(_detection(**kw)).detection_seconds

    # LID keeps no reference statistics, so its whole cost is per example: 2n costs twice n.
    assert seconds(detectors=("lid",), n=200) == pytest.approx(2 * seconds(detectors=("lid",), n=100))
    # KD's reference over the training images is paid once, whatever n.
    kd_reference = seconds(detectors=("kd",), n=100) - (seconds(detectors=("kd",), n=200) - seconds(detectors=("kd",), n=100))
    assert kd_reference > 0
    # No n: the whole test set.
    assert seconds(n=None) == pytest.approx(seconds(n=info("digits").test_size))
    # C&W's 9 binary-search rounds on 100 examples: 8 rounds × steps × n passes more than one round.
    def cw(rounds):
        attack = {"attack": "cw_l2", "eps": 0.007, "options": {"steps": 10, "search_steps": rounds}}
        return seconds(detectors=("lid",), attacks=[attack], n=100)
    assert cw(9) - cw(1) == pytest.approx(8 * 10 * 100 * _pass_seconds() / SMOKE["eval_n"])
    # On RSE every crafting pass and every detector forward is the ensemble.
    ensemble = defaults("rse", "digits")["ensemble"]
    assert seconds(detectors=("lid",), method="rse", n=100) == pytest.approx(ensemble * seconds(detectors=("lid",), n=100))


def test_a_detection_plan_that_is_not_one_is_one_error():
    import dataclasses

    trial = dataclasses.replace(_trial(), detection={"detectors": ["kd"]})
    with pytest.raises(ValueError, match=r"^trial.detection: expected a grid.spec.DetectionPlan or None, got dict$"):
        cost.trial_cost(trial)


def test_dry_run_prices_the_detection_stage_per_trial_and_in_the_total(capsys):
    """jobs/detection.py's paper preset: each trial's GPU-h and the total include its detection
    stage, and they exceed the same grid without detection by what the stage costs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("detection_job", REPO / "jobs" / "detection.py")
    job = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(job)
    assert job_main({"paper": job.PAPER}, default="paper", argv=["--dry-run"]) == 0
    text = capsys.readouterr().out
    trials = GridSpec.from_dict(job.PAPER).expand()
    costs = [cost.trial_cost(t) for t in trials]
    assert all(c.detection_seconds > 0 for c in costs)
    for t, c in zip(trials, costs):
        assert f"{c.gpu_seconds / 3600:>8.2f}" in next(line for line in text.splitlines() if line.startswith(t.name))
    total = sum(c.gpu_seconds for c in costs) / 3600
    assert f"estimated total: {total:,.1f} GPU-hours" in text
    plain = cost.gpu_hours_estimate(GridSpec.from_dict(dict(job.PAPER, detection=None)).expand())
    assert total - plain == pytest.approx(sum(c.detection_seconds for c in costs) / 3600)
