"""The code version on every path, and the CLI's rough edges: ``--version``, a reader leaving the
pipe early, one name for the folder argument.

Provenance: ``ray job submit --working-dir .`` uploads a tree without ``.git``, so the job's
driver and trials cannot read the commit; ``er-grid submit`` resolves it where the checkout is
and sends it as ``ER_GRID_CODE_VERSION``, which the code-version function reads first, and a
driver exports its own before it starts Ray. Unit tests need no Ray (~5 s); the Ray test (~2 min
on 2 CPUs) runs one one-trial grid through ``er-grid submit`` and one through ``er-grid run`` on
the session's head and compares the rows' code versions.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from grid.cli import main
from grid.common.fingerprint import CODE_VERSION_ENV, checkout_code_version, er_grid_code_version
from grid.store import ResultStore

REPO = Path(__file__).resolve().parents[3]
BIN = Path(sys.executable).parent


@pytest.fixture
def fresh_version(monkeypatch):
    """The code version resolved anew inside the test, and forgotten after it, so no value set
    here leaks into the rows other tests in this process write."""
    monkeypatch.delenv(CODE_VERSION_ENV, raising=False)
    er_grid_code_version.cache_clear()
    yield monkeypatch
    er_grid_code_version.cache_clear()


def test_the_travelling_version_comes_first(fresh_version):
    checkout = er_grid_code_version()
    assert checkout == checkout_code_version(REPO) and "+g" in checkout  # this is a git checkout
    er_grid_code_version.cache_clear()
    fresh_version.setenv(CODE_VERSION_ENV, "0.1.0+gfeedbee")
    assert er_grid_code_version() == "0.1.0+gfeedbee"
    er_grid_code_version.cache_clear()
    fresh_version.setenv(CODE_VERSION_ENV, "0.1.0 rm -rf")
    with pytest.raises(ValueError, match=CODE_VERSION_ENV):
        er_grid_code_version()


def test_a_tree_without_git_records_only_the_package_version(tmp_path):
    assert checkout_code_version(tmp_path) == checkout_code_version(REPO).split("+")[0]


def test_the_tuner_exports_the_drivers_version_to_what_its_trials_inherit(fresh_version, tmp_path):
    """build_tuner (every run's) puts the driver's version in the environment a local Ray's
    raylet and workers inherit; a version that came with the job is kept, not replaced."""
    import os

    from grid.run.tuner import build_tuner
    from grid.spec import GridSpec

    spec = GridSpec.from_dict({"experiment": "v", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
                               "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 20,
                               "storage_path": str(tmp_path)})
    build_tuner(spec)
    assert os.environ[CODE_VERSION_ENV] == checkout_code_version(REPO)
    fresh_version.setenv(CODE_VERSION_ENV, "0.1.0+gsubmit")
    er_grid_code_version.cache_clear()
    build_tuner(spec)
    assert os.environ[CODE_VERSION_ENV] == "0.1.0+gsubmit"


def test_submit_adds_the_checkouts_version_to_the_runtime_env(fresh_version, tmp_path, capsys):
    from grid.cli.submit import runtime_env_with_version

    env = runtime_env_with_version(REPO)
    assert env["env_vars"] == {CODE_VERSION_ENV: checkout_code_version(REPO)}
    assert ".git/" in env["excludes"]  # jobs/runtime_env.yaml's own fields are kept
    clash = tmp_path / "env.yaml"
    clash.write_text(yaml.safe_dump({"env_vars": {CODE_VERSION_ENV: "mine"}}))
    assert main(["submit", "--runtime-env", str(clash), "--", "python", "-c", "pass"]) == 2
    assert f"sets {CODE_VERSION_ENV}" in capsys.readouterr().err
    assert main(["submit", "--working-dir", str(REPO)]) == 2  # no entrypoint
    assert "after --" in capsys.readouterr().err


def test_version_prints_package_and_code_version(fresh_version, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out == f"er-grid 0.1.0 (code version {checkout_code_version(REPO)})\n"


def test_one_name_for_the_folder_argument(capsys):
    for command in ("resume", "status", "query", "report"):
        with pytest.raises(SystemExit):
            main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())  # help text wraps where the terminal ends
        assert "positional arguments: EXPERIMENT_OR_RESULTS the experiment folder" in text, command
        assert "or its results/ folder" in text, command


def test_a_reader_leaving_early_is_quiet_and_exits_141(tmp_path):
    """``er-grid query … | head``: the reader closes the pipe before the table is written. No
    "er-grid: error: Broken pipe", no "Exception ignored" at exit; 141 as for `seq … | head`."""
    root = tmp_path / "results"
    rows = [{"train_eps": None, "lam": None, "seed": 0, "epochs": 1, "norm": "Linf", "sample_idx": i, "label": 1,
             "pred_clean": 1, "pred_adv": 1, "correct_clean": True, "correct_adv": True, "l2": 0.1, "l2_rms": 0.01,
             "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": "{}", "checkpoint_hash": "abc",
             "eval_subset": "n=4,seed=0", "library_versions": "{}", "gradient_failed": False, "randomized": False}
            for i in range(4)]
    ResultStore(str(root)).write_batch(rows, experiment="e", dataset="digits", method="none", trial_id="t",
                                       attack="pgd", eps=0.1, batch=0)
    process = subprocess.Popen([str(BIN / "er-grid"), "query", str(root), "--format", "csv"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # the reader is gone before anything is written
    err = process.stderr.read().decode()
    assert process.wait(timeout=120) == 141 and err == "", err


# --------------------------------------------------------------------------- through Ray


TINY = {"datasets": ["digits"], "methods": ["none"], "epochs": 1, "eval_n": 20, "eval_batch_size": 20,
        "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "resources": {"cpu": 1, "gpu": 0},
        "max_failures": 0}


@pytest.mark.ray
def test_rows_through_the_job_path_carry_the_same_code_version_as_er_grid_run(ray_head, tmp_path):
    """One trial submitted as a Ray job with ``er-grid submit`` (the uploaded copy has no .git:
    without the travelling version its rows say only ``0.1.0``) and one through ``er-grid run``
    on the same head: every row of both records the checkout's commit."""
    from ray_helpers import run_cli

    from grid.store import load, load_trials

    spec = tmp_path / "tiny.yaml"
    spec.write_text(yaml.safe_dump({"experiment": "tiny", **TINY}))
    submitted = subprocess.run(
        [str(BIN / "er-grid"), "submit", "--address", ray_head.dashboard, "--working-dir", ".", "--",
         "python", "-m", "grid.cli.main", "run", str(spec), "--storage", str(tmp_path / "job")],
        cwd=REPO, env=ray_head.env(), capture_output=True, text=True, timeout=400)
    assert submitted.returncode == 0, submitted.stdout[-3000:] + submitted.stderr[-3000:]
    direct = run_cli(ray_head, "run", str(spec), "--storage", str(tmp_path / "run"), timeout=400)
    assert direct.returncode == 0, direct.stdout[-3000:] + direct.stderr[-3000:]

    expected = checkout_code_version(REPO)
    assert "+g" in expected
    for storage in ("job", "run"):
        experiment = tmp_path / storage / "tiny"
        assert set(load(experiment)["code_version"]) == {expected}, storage
        assert set(load_trials(experiment)["code_version"]) == {expected}, storage


def test_a_submitted_jobs_own_env_vars_are_not_forwarded_twice(monkeypatch):
    """Ray refuses a driver's runtime env that repeats a key of the submitted job's env_vars, so
    connect() leaves out what the job already sets (read from the config Ray hands the driver)."""
    import json

    from grid.run.session import JOB_CONFIG_ENV, submitted_job_env_vars

    monkeypatch.delenv(JOB_CONFIG_ENV, raising=False)
    assert submitted_job_env_vars() == set()
    monkeypatch.setenv(JOB_CONFIG_ENV, json.dumps({"runtime_env": {"env_vars": {CODE_VERSION_ENV: "x", "A": "1"},
                                                                   "working_dir": "gcs://pkg.zip"}}))
    assert submitted_job_env_vars() == {CODE_VERSION_ENV, "A"}
    monkeypatch.setenv(JOB_CONFIG_ENV, "not json")
    assert submitted_job_env_vars() == set()


@pytest.mark.ray
def test_a_driver_joining_a_cluster_by_address_sends_its_code_version_to_the_workers(ray_head):
    """Workers of a cluster joined by address do not inherit the driver's environment: connect()
    sends the driver's code version in the job's env_vars, so a trial records the driver's
    version even where the worker's copy of the code would say something else."""
    probe = ("import os, ray\n"
             "from grid.run.session import connect\n"
             "connect()\n"
             "@ray.remote(num_cpus=0.1)\n"
             f"def version(): return os.environ.get({CODE_VERSION_ENV!r})\n"
             "print('worker-sees', ray.get(version.remote()))\n")
    done = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, timeout=300,
                          env=ray_head.env(**{CODE_VERSION_ENV: "0.1.0+gdriver"}))
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "worker-sees 0.1.0+gdriver" in done.stdout, done.stdout[-2000:]
