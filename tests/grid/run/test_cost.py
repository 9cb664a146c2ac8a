"""The cost estimate a user plans with: measured per-epoch costs, wall time on G GPUs, storage,
calibration from trial rows; the time-remaining estimate of ``er-grid status``. No Ray; ~3 s."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from grid.run import cost
from grid.cli.job import job_main
from grid.run.estimate import remaining_seconds
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


def test_time_remaining_follows_each_trials_pace():
    trial = GridSpec.from_dict(SMOKE).expand()[0]
    c = cost.trial_cost(trial)
    half_trained = SimpleNamespace(epochs_done=trial.epochs, epochs=trial.epochs, batches_done=0,
                                   batches_total=len(trial.eval_batches()), elapsed_s=100.0, state="TRAINING",
                                   config=trial)
    done = c.train_seconds / c.gpu_seconds
    # Training done, evaluation not started: the rest takes 100 s × (1 − done) / done.
    assert remaining_seconds([half_trained]) == pytest.approx(100.0 * (1 - done) / done)
    finished = SimpleNamespace(**{**vars(half_trained), "batches_done": half_trained.batches_total})
    assert remaining_seconds([finished]) == 0.0
    pending = SimpleNamespace(**{**vars(half_trained), "epochs_done": 0, "elapsed_s": 0.0, "state": "PENDING"})
    assert remaining_seconds([pending]) is None


def test_dry_run_calibrates_from_a_stores_trial_rows(tmp_path, capsys):
    from grid.store import ResultStore

    trial = GridSpec.from_dict(SMOKE).expand()[0]  # digits, none: clean training
    ResultStore(str(tmp_path)).write_trial({
        "trial_id": trial.trial_id, "experiment": "smoke", "dataset": "digits", "method": trial.method,
        "train_eps": None, "lam": None, "seed": 0, "epochs": 3, "clean_accuracy": 0.9,
        "losses_json": json.dumps([{"seconds": 4.0}] * 3), "wall_seconds": 12.0, "device": "cpu",
        "checkpoint_hash": "abc",
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


def test_a_rays_query_budget_sets_its_evaluation_cost():
    """RayS's ``max_queries`` (forward-only, ~3 per forward+backward pass) drives its estimate:
    10× the budget costs 10× the evaluation, and without the option RayS's default budget holds."""
    def eval_seconds(item):
        spec = dict(SMOKE, eval_plan={"digits": [item]})
        return cost.trial_cost(GridSpec.from_dict(spec).expand()[0]).eval_seconds

    small = eval_seconds({"attack": "rays", "eps": [0.2], "options": {"max_queries": 300}})
    large = eval_seconds({"attack": "rays", "eps": [0.2], "options": {"max_queries": 3000}})
    default = eval_seconds({"attack": "rays", "eps": [0.2]})
    assert large == pytest.approx(10 * small)
    assert default == pytest.approx(small * 10_000 / 300)  # RayS's default budget is 10,000 queries


def test_cw_costs_every_binary_search_round():
    """C&W runs up to ``steps`` Adam steps in each of its ``search_steps`` rounds: 9 rounds of
    1,000 steps cost 9× one round, and the paper grid's C&W is priced at steps × rounds."""
    def eval_seconds(options):
        spec = dict(SMOKE, eval_plan={"digits": [{"attack": "cw_l2", "eps": [0.0], "options": options}]})
        return cost.trial_cost(GridSpec.from_dict(spec).expand()[0]).eval_seconds

    one_round = eval_seconds({"steps": 1000, "search_steps": 1})
    assert eval_seconds({"steps": 1000, "search_steps": 9}) == pytest.approx(9 * one_round)
    assert eval_seconds({"steps": 100, "search_steps": 9}) == pytest.approx(0.9 * one_round)


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
