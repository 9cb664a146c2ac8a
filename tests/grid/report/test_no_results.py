"""A planned trial with no committed rows (its commit record deleted, or never written) is named
by ``er-grid query`` (stderr) and ``er-grid report`` (a line of the document) with its count,
never silently absent; a results folder without a spec record beside it knows no plan and says
nothing new. A real spec record (``record_spec``) over a store written through ``ResultStore``;
no Ray. Runtime: ~6 s."""

from __future__ import annotations

import shutil

import pytest

from grid.cli import main
from grid.experiment import record_spec
from grid.spec import GridSpec
from grid.store import ResultStore

SPEC = {
    "experiment": "planned", "datasets": ["digits"], "methods": ["none", "madry"], "seeds": [0, 1], "epochs": 2,
    "train_eps": {"digits": [0.1]}, "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 4,
}


def row(trial, sample_idx: int) -> dict:
    return {
        "train_eps": trial.train_eps, "lam": None, "seed": trial.seed, "epochs": 2, "norm": "Linf",
        "sample_idx": sample_idx, "label": 1, "pred_clean": 1, "pred_adv": 1, "correct_clean": True,
        "correct_adv": True, "l2": 0.1, "l2_rms": 0.01, "linf": 0.1, "queries": -1, "seconds": 0.01,
        "attack_config": '{"attack":"fgsm"}', "checkpoint_hash": "abc", "eval_subset": "n=4,seed=0",
        "library_versions": "{}", "gradient_failed": False, "randomized": False,
    }


@pytest.fixture
def experiment(tmp_path):
    """The spec's 4 trials planned; every trial's rows committed."""
    spec = GridSpec.from_dict(dict(SPEC, storage_path=str(tmp_path)))
    folder = tmp_path / "planned"
    record_spec(spec, str(folder))
    store = ResultStore(str(folder / "results"))
    trials = spec.expand()
    for trial in trials:
        store.write_batch([row(trial, i) for i in range(4)], experiment=trial.experiment, dataset=trial.dataset,
                          method=trial.method, trial_id=trial.trial_id, attack="fgsm", eps=0.1, batch=0)
    return folder, trials


def forget(folder, trial) -> None:
    """Delete the trial's commit record, as a person with write access could."""
    (folder / "results" / "_commits" / f"{trial.trial_id}.json").unlink()


def test_query_names_planned_trials_whose_commit_record_is_gone(experiment, capsys):
    folder, trials = experiment
    assert main(["query", str(folder), "--format", "csv"]) == 0
    assert "no results" not in capsys.readouterr().err  # every planned trial has rows
    gone = sorted(trials[1:3], key=lambda t: t.name)
    for trial in gone:
        forget(folder, trial)
    assert main(["query", str(folder), "--format", "csv"]) == 0
    out, err = capsys.readouterr()
    assert err == f"er-grid: warning: 2 planned trials have no results: {gone[0].name}, {gone[1].name}\n"
    assert out.count("fgsm") >= 1  # the rows that are there are still answered
    # The results folder means its experiment; a trial filter keeps only the trials it selects.
    method = gone[0].method
    assert main(["query", str(folder / "results"), "--method", method, "--format", "csv"]) == 0
    err = capsys.readouterr().err
    assert err == f"er-grid: warning: 1 planned trial has no results: {gone[0].name}\n"


def test_report_has_a_line_naming_planned_trials_without_results(experiment, tmp_path, capsys):
    folder, trials = experiment
    forget(folder, trials[0])
    out = tmp_path / "report.md"
    assert main(["report", str(folder), "--out", str(out)]) == 0
    text = out.read_text()
    assert f"**1 planned trial has no results: {trials[0].name}**" in text
    assert text.count("planned trial") == 1
    forget(folder, trials[1])
    assert main(["report", str(folder)]) == 0
    names = ", ".join(sorted(t.name for t in trials[:2]))
    assert f"**2 planned trials have no results: {names}**" in capsys.readouterr().out


def test_a_bare_results_folder_knows_no_plan_and_says_nothing_new(experiment, tmp_path, capsys):
    folder, trials = experiment
    forget(folder, trials[0])
    bare = tmp_path / "copied" / "results"
    shutil.copytree(folder / "results", bare)  # no grid_spec.json beside it
    assert main(["query", str(bare), "--format", "csv"]) == 0
    assert "no results" not in capsys.readouterr().err
    assert main(["report", str(bare)]) == 0
    assert "planned trial" not in capsys.readouterr().out


def test_a_damaged_spec_record_stops_query_unless_skip_damaged(experiment, capsys):
    folder, trials = experiment
    forget(folder, trials[0])
    (folder / "grid_spec.json").write_text('{"experiment": "planned", "trials": {}}')
    assert main(["query", str(folder), "--format", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "grid_spec.json is damaged" in err
    assert main(["query", str(folder), "--format", "csv", "--skip-damaged"]) == 0
    err = capsys.readouterr().err
    assert "grid_spec.json is damaged" in err and "planned trials without results not listed" in err
