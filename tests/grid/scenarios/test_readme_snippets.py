"""The README's snippets that name ``make demo``'s experiment (``results/demo/smoke``), run as
written against the session's smoke grid (``smoke_experiment``: the same preset through ``er-grid
submit``), found under that name in a working folder of their own. The list of every README
snippet and the test that runs it is ``tests/test_readme.py``'s ``SNIPPETS``; this file holds the
ones that need a Ray-made experiment, so they cost no grid of their own.
"""

from __future__ import annotations

import shlex
import sys

import pytest
import torch

from ray_helpers import REPO

sys.path.insert(0, str(REPO / "tests"))
sys.path.insert(0, str(REPO / "jobs"))
from test_readme import README, commands, run_snippet  # noqa: E402  (the README test's own parsing)

pytestmark = pytest.mark.ray

DEMO = "results/demo/smoke"


@pytest.fixture
def demo_folder(smoke_experiment, tmp_path, monkeypatch):
    """A working folder where ``results/demo/smoke`` is the session's smoke experiment."""
    experiment, submit = smoke_experiment
    assert submit.returncode == 0, submit.stdout[-3000:] + submit.stderr[-3000:]
    (tmp_path / "results" / "demo").mkdir(parents=True)
    (tmp_path / DEMO).symlink_to(experiment, target_is_directory=True)
    monkeypatch.chdir(tmp_path)
    return experiment


def test_load_model_snippet_runs_against_the_demo_experiment(demo_folder):
    from grid.store import load_trials

    ran = run_snippet('grid.load_model("results/demo/smoke", trial_id)')
    assert ran["trial_id"] in set(load_trials(demo_folder)["trial_id"])  # taken from the experiment's rows
    assert ran["x"].shape == (8, 1, 8, 8) and 0.0 <= float(ran["x"].min()) and float(ran["x"].max()) <= 1.0
    with torch.no_grad():
        pred = ran["method"].model(ran["x"]).argmax(1)
    assert pred.shape == (8,) and ran["method"].loaded_epoch == 3  # the newest checkpoint of 3 epochs


def test_calibrate_command_runs_on_the_demo_experiment(demo_folder, capsys):
    from full_grid import PAPER, SMOKE
    from grid.cli.job import job_main

    (command,) = [c for c in commands(README) if "--calibrate" in c]
    argv = shlex.split(command)
    assert argv[:2] == ["python", "jobs/full_grid.py"] and DEMO in argv
    assert job_main({"paper": PAPER, "smoke": SMOKE}, default="paper", argv=argv[2:]) == 0
    out = capsys.readouterr().out
    assert "per-epoch costs calibrated for digits from 3 trial row(s) on cpu" in out
    assert "results would go to: " in out


def test_the_job_says_where_its_results_go(smoke_experiment):
    experiment, submit = smoke_experiment
    assert f"results: {experiment}\n" in submit.stdout  # before the run, as the README says
