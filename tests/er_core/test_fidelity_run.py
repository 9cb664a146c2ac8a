"""The Ray-free fidelity runner: trials expanded like the grid's, trained and evaluated through
er_core alone, the summary files and the table; nothing from grid or Ray is imported.

Runtime: ~5 s (one process: a 1-epoch digits training, PGD-3 and FGSM on 20 examples).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from er_core.fidelity_run import expand

REPO = Path(__file__).resolve().parents[2]
TINY = {"datasets": ["digits"], "methods": ["none"], "epochs": 1, "batch_size": 64, "eval_n": 20,
        "eval_batch_size": 10, "eval_plan": {"digits": [
            {"attack": "pgd", "eps": [0.1, 0.3], "options": {"steps": 3}}, {"attack": "fgsm", "eps": [0.1]}]}}


def test_expand_applies_axes_only_where_a_method_uses_them():
    spec = {**TINY, "methods": ["none", "madry", "er"], "train_eps": {"digits": [0.1, 0.2]}, "lams": [1.0, 5.0],
            "seeds": [0, 1]}
    trials = expand(spec)
    counts = {m: sum(t["method"] == m for t in trials) for m in ("none", "madry", "er")}
    assert counts == {"none": 2, "madry": 4, "er": 8}  # seeds; × train ε; × train ε × λ
    er = [t for t in trials if t["method"] == "er"][0]
    assert er["hyperparams"] == {"init_seed": er["seed"], "lam": er["lam"], "train_eps": er["train_eps"]}
    assert [(i["attack"], i["eps"]) for i in er["eval_plan"]] == [("pgd", 0.1), ("pgd", 0.3), ("fgsm", 0.1)]


@pytest.mark.parametrize("change, message", [
    ({"methods": ["nope"]}, "unknown method 'nope'"),
    ({"eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"stepz": 3}}]}}, "stepz"),
    ({"methods": ["madry"]}, "train_eps"),
])
def test_bad_spec_fails_before_any_work(change, message):
    with pytest.raises(ValueError, match=message):
        expand({**TINY, **change})


def test_bad_workers_fail_before_any_work(tmp_path):
    from er_core.fidelity_run import run_local

    with pytest.raises(ValueError, match="workers"):
        run_local(TINY, tmp_path, workers=0)
    assert not any(tmp_path.iterdir())


def test_runs_with_er_core_alone_and_writes_the_table(tmp_path):
    script = f"""
import json, sys
sys.path.insert(0, {str(REPO / 'jobs')!r})
import fidelity  # the job file: its --no-ray path must not need grid either
from er_core.fidelity_run import run_local, format_table
summaries = run_local(json.loads({json.dumps(json.dumps(TINY))}), {str(tmp_path)!r}, workers=1, progress=None)
print(format_table(summaries))
print("IMPORTED", [m for m in ("grid", "ray") if m in sys.modules])
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          env={"PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert done.returncode == 0, done.stderr[-3000:]
    assert "IMPORTED []" in done.stdout
    header = done.stdout.splitlines()[0]
    assert header.startswith("| trial | epochs | final loss | clean | fgsm@0.1 | pgd@0.1 | pgd@0.3 | flags |")
    summary = json.loads((tmp_path / "summary.json").read_text())
    (trial,) = summary["trials"]
    assert trial["label"] == "digits-none-s0" and set(trial["accuracy"]) == {"pgd@0.1", "pgd@0.3", "fgsm@0.1"}
    # Robust accuracy never exceeds clean accuracy, and a stronger ε never helps.
    assert trial["accuracy"]["pgd@0.3"] <= trial["accuracy"]["pgd@0.1"] <= trial["clean_accuracy"]
    examples = [json.loads(line) for line in (tmp_path / "examples.jsonl").read_text().splitlines()]
    assert len(examples) == 3 * 20 and {e["attack"] for e in examples} == {"pgd", "fgsm"}
    assert (tmp_path / "summary.csv").read_text().splitlines()[0].startswith("trial,epochs,final loss,clean")


def test_progress_counts_every_epoch_and_batch_and_names_each_finished_trial(tmp_path, capsys):
    from er_core.fidelity_run import run_local, trial_steps

    (trial,) = expand(TINY)
    assert trial_steps(trial) == 1 + 3 * 2  # one epoch, 3 (attack, ε) × 2 batches of 10
    lines: list = []
    run_local(TINY, tmp_path, workers=1, progress=lines.append, bar=True)
    drawn = capsys.readouterr()
    assert "1 trials: 100%" in drawn.err and "7/7" in drawn.err
    # The bar was drawn, so the trial's line went above it (tqdm.write), the run's line after it.
    assert drawn.out.startswith("digits-none-s0: done in") and lines[-1].startswith("1 trials on cpu with 1 worker(s)")
    run_local(TINY, tmp_path, workers=1, progress=lines.append)  # no terminal: lines instead of a bar
    assert capsys.readouterr().err == "" and lines[-2].startswith("digits-none-s0: done in")
