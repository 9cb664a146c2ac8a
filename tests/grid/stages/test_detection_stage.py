"""The grid's detection stage: spec-field validation, rows through the store, resume, Tables 5–8.

The stage function is called directly on trials expanded from a real GridSpec (≈ 10 s on 2
CPU threads: two 3-epoch digits models, FGSM + 5-step PGD on 100 test examples), and end to
end through Ray on one experiment: killed inside the stage by ``er-grid run``, then resumed by
``ray job submit`` of jobs/detection.py --preset smoke, submitted twice (marked ``ray``).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from er_core import data as er_data
from er_core import methods, train
from grid.stages import detection
import grid.report as report
from grid.spec.detection_plan import trial_detection_plan, validate_detection_spec
from grid.report.detection_tables import detection_tables
from grid.spec import GridSpec
from types import SimpleNamespace

from grid.stages import TrialBundle
from grid.store import DETECTION_DIR, ResultStore, load_detection

SPEC = {
    "experiment": "dettest",
    "datasets": ["digits"],
    "methods": ["none", "er_minus"],
    "lams": [10.0],
    "epochs": 3,
    "batch_size": 64,
    "hyperparams": {"none": {"dropout": 0.5}},
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 20,
}
DETECTION = {
    "digits": {
        "detectors": ["kd", "lid", "er1", "er2"],
        "attacks": [{"attack": "fgsm", "eps": 0.3}, {"attack": "pgd", "eps": 0.3, "options": {"steps": 5}}],
        "n": 100,
        "configs": {"kd": {"mc_passes": 10}},
    }
}


def _validated(raw=DETECTION, spec=SPEC):
    return validate_detection_spec(raw, spec["datasets"], spec["methods"], spec.get("hyperparams"))


def test_validation_fills_defaults_and_names_bad_fields():
    plan = _validated()["digits"]
    assert plan.split_seed == 0 and plan.fit_fraction == 0.2 and plan.overbound == "project"
    assert plan.methods["kd"] == ("none",) and "er_minus" in plan.methods["er1"]
    # Attacks default to the paper's settings (digits: MNIST's ε 0.3 and C&W bound 0.007).
    paper = _validated({"digits": {"detectors": ["er1"]}})["digits"].attacks
    assert {(a.attack, a.eps) for a in paper} == {("fgsm", 0.3), ("pgd", 0.3), ("cw_l2", 0.007)}
    bad = [
        ({"digits": {"detectors": ["kd", "nope"]}}, SPEC, "spec.detection.digits.detectors: unknown detector 'nope'"),
        ({"mnist": {"detectors": ["kd"]}}, SPEC, "dataset 'mnist' is not in spec.datasets"),
        ({"digits": {"detectors": ["er1"], "attacks": [{"attack": "fgsm", "eps": 1.5}]}}, SPEC, r"attacks\[0\].eps"),
        ({"digits": {"detectors": ["er1"], "configs": {"er1": {"bandwith": 1}}}}, SPEC, "configs.er1"),
        ({"digits": {"detectors": ["kd"]}}, {**SPEC, "hyperparams": {}}, "kd needs MC dropout"),
        ({"digits": {"detectors": ["er1"], "methods": {"er1": ["madry"]}}}, SPEC, "would never run"),
        ({"digits": {"detectors": ["er1"], "n": 361}}, SPEC, "has 360 test examples"),
    ]
    for raw, spec, message in bad:
        with pytest.raises(ValueError, match=message):
            _validated(raw, spec)


def test_trial_plan_picks_the_detectors_of_the_trials_method():
    validated = _validated()
    assert trial_detection_plan(validated, "digits", "none").detectors == ("kd", "lid")
    assert trial_detection_plan(validated, "digits", "er_minus").detectors == ("er1", "er2")
    assert trial_detection_plan(validated, "digits", "madry") is None
    assert trial_detection_plan(None, "digits", "none") is None


@pytest.fixture(scope="module")
def trained():
    spec = GridSpec.from_dict(SPEC)
    data = er_data.load("digits")
    out = []
    for trial in spec.expand():
        method = methods.make(trial.method, trial.dataset, **trial.method_hyperparams())
        train.fit(method, data, epochs=trial.epochs, batch_size=trial.batch_size, seed=trial.seed)
        out.append((trial, method.model))
    return data, out


def test_stage_writes_rows_through_the_store_and_a_rerun_adds_none(tmp_path, trained):
    data, trials = trained
    store = ResultStore(tmp_path / "results")
    validated = _validated()
    written = 0
    for trial, model in trials:
        plan = trial_detection_plan(validated, trial.dataset, trial.method)
        written += detection.run_detection_stage(store, trial, model, data, plan, checkpoint_hash="abc")
    # Two detectors per trial × (2 fit attacks × 2 test attacks).
    assert written == 2 * 2 * 4
    df = load_detection(store)
    assert len(df) == written
    assert set(df["detector"]) == {"kd", "lid", "er1", "er2"}
    assert set(df.loc[df["detector"] == "kd", "method"]) == {"none"}
    assert df[["acc_adv", "acc_nadv", "acc_com"]].notna().all().all()
    assert (df["n_nat"] == 80).all()  # set II of the 100-example subset
    # A temp file left by a killed writer is never read.
    directory = store.partition_dir(DETECTION_DIR, "dettest", "digits", "none")
    (tmp_path / "results" / "detection" / "experiment=dettest" / "dataset=digits" / "method=none" /
     ".half.parquet.tmp-x").write_bytes(b"garbage")
    assert directory.endswith("method=none")

    # Rerun through the stage (as after a kill or a resume): nothing is recomputed, no duplicates.
    again = sum(
        detection.STAGE.run(TrialBundle(
            trial=dataclasses.replace(t, detection=trial_detection_plan(validated, t.dataset, t.method)),
            store=store, method=SimpleNamespace(model=m), data=data, checkpoint_hash="abc", device="cpu", state=None))
        for t, m in trials
    )
    assert again == 0
    df2 = load_detection(store)
    keys = ["trial_id", "detector", "fit_attack", "test_attack"]
    assert len(df2) == written and not df2.duplicated(keys).any()
    one = load_detection(store, trial_id=trials[0][0].trial_id)
    assert len(one) == 8 and set(one["trial_id"]) == {trials[0][0].trial_id}

    tables = detection_tables(df2)
    assert "Table 5." in tables and "Table 6." in tables and "Table 7." in tables
    assert "ACC-NADV" in tables and "ACC-COM" in tables and "PGD er2" in tables
    assert detection_tables(df2.iloc[0:0]) == ""
    # `er-grid report` prints the same tables under its detection heading.
    assert report.detection_tables(df2) == f"## Detection (Tables 5–8)\n\n{tables}"


def test_detection_tables_average_seeds_and_split_configurations():
    import pandas as pd

    base = {"experiment": "e", "dataset": "mnist", "trial_id": "t", "train_eps": None, "epochs": 1,
            "fit_attack": "pgd", "test_attack": "pgd", "acc_adv": 0.5, "acc_cla": 0.0, "acc_com": 0.5}
    rows = [
        {**base, "method": "none", "lam": None, "seed": 0, "detector": "kd", "acc_nadv": 0.90},
        {**base, "method": "none", "lam": None, "seed": 1, "detector": "kd", "acc_nadv": 0.80},
        {**base, "method": "er", "lam": 1.0, "seed": 0, "detector": "er1", "acc_nadv": 0.97},
        {**base, "method": "er", "lam": 10.0, "seed": 0, "detector": "er1", "acc_nadv": 0.99},
    ]
    text = detection_tables(pd.DataFrame(rows))
    assert "85.00 ± 7.07 (n=2)" in text  # two seeds of one configuration are averaged
    assert "er1 [er λ=1]" in text and "er1 [er λ=10]" in text  # two λ are not
    assert "97.00" in text and "99.00" in text


@pytest.mark.ray
def test_kill_during_detection_then_the_job_resumes_and_adds_each_row_once(ray_head, tmp_path):
    """Trials SIGKILLed inside the detection stage (adversarial examples crafted, rows not yet
    written) leave no detection rows. ``ray job submit`` of jobs/detection.py --preset smoke on
    the same storage then resumes that experiment: every trial's detection rows land in the store
    exactly once (trials × their detectors × attack pairs) and the evaluation batches stored
    before the kill are not recomputed; submitting the same job again resumes the finished
    experiment and adds nothing; ``er-grid report`` reads it. One experiment serves the kill and
    the job, so the file starts three Ray runs, not four (the suite is near its time limit)."""
    import subprocess
    import sys

    import yaml

    from ray_helpers import REPO, run_cli

    sys.path.insert(0, str(REPO / "jobs"))
    from detection import SMOKE  # the job file's spec, so the counts follow it

    storage = tmp_path / "storage"
    # max_failures 0: the kill fails the run instead of being retried. Not part of any trial's
    # config, so the job's preset (max_failures 1) recognises the experiment as its own.
    spec = {**SMOKE, "max_failures": 0}
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    experiment = storage / SMOKE["experiment"]
    results = experiment / "results"

    killed = run_cli(ray_head, "run", str(spec_file), "--storage", str(storage), ER_GRID_TEST_KILL_IN_DETECTION="1")
    assert killed.returncode == 1, killed.stdout[-3000:] + killed.stderr[-3000:]
    assert len(load_detection(results)) == 0
    store = ResultStore(str(results))
    before = {p: Path(p).stat().st_mtime_ns for p in store.files()}
    trials = GridSpec.from_dict(SMOKE).expand()
    assert len(before) == sum(t.num_eval_batches * len(t.eval_plan) for t in trials)

    command = ray_head.job_command("jobs/detection.py", "smoke", storage)
    counts = []
    for _ in range(2):  # resumes the killed experiment, then the finished one
        submit = subprocess.run(command, cwd=REPO, env=ray_head.env(), capture_output=True, text=True, timeout=600)
        assert submit.returncode == 0, submit.stdout[-4000:] + submit.stderr[-4000:]
        df = load_detection(results)
        assert not df.duplicated(["trial_id", "detector", "fit_attack", "test_attack"]).any()
        counts.append(len(df))
        assert {p: Path(p).stat().st_mtime_ns for p in store.files()} == before  # evaluation not redone
    pairs = len(SMOKE["detection"]["digits"]["attacks"]) ** 2
    assert counts == [2 * 2 * pairs] * 2  # none: kd, lid; er_minus: er1, er2
    assert set(df["trial_id"]) == {t.trial_id for t in trials}
    report = run_cli(ray_head, "report", str(experiment))
    assert report.returncode == 0, report.stderr[-3000:]
