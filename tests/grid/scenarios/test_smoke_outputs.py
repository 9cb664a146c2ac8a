"""One small grid on the session's Ray head, then everything a researcher takes away from it.

The grid: digits, E-CLA and ER-Classifier− (λ 5), 3 epochs, PGD and FGSM at ε 0.1 on 40
examples, the codes stage on, ``keep_checkpoints: 2``. Its trials are SIGKILLed after their
first evaluation batch and ``er-grid resume`` finishes them, so the checks below also cover a
resume from the two checkpoints kept.

Checked: two checkpoints per trial (the newest epochs) and a complete store after the resume;
the codes table has one row per (trial, example, natural | adversarial); the t-SNE figure
has four panels (E-CLA, then ER-Classifier−; natural, then PGD with ▼ for fooled examples)
and the report links it (the report's other files are checked without Ray in
test_report_export.py); ``grid.load_model`` gives back models whose
predictions on the evaluation subset equal the stored ``pred_clean``; every Tune report of a
trial has the same keys (held-out accuracy included); ``status`` estimates the time remaining;
a damaged codes/ and sanity/ file are named by ``status`` and restored by ``resume`` (every
stage is repaired, not only the evaluation); ``status`` and ``query`` run without torch.

Runtime: three drivers on the shared head (~8 s each on an idle machine, like the resume tests),
t-SNE of 4 × 40 points (~3 s), model loading (~3 s).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import yaml
from matplotlib.figure import Figure

import er_core.data
import grid
from grid.store import load_codes, load_trials
from grid.store import load
from ray_helpers import run_cli

EVAL_N = 40
SPEC = {
    "experiment": "outputs",
    "datasets": ["digits"],
    "methods": ["e_cla", "er_minus"],
    "lams": [5.0],
    "epochs": 3,
    "batch_size": 32,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}},
                             {"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": EVAL_N,
    "eval_batch_size": 20,
    "codes": {"steps": 5},
    "keep_checkpoints": 2,
    # A validation split, and the stages evaluate the best epoch on it (Rice et al.'s early stop).
    "validation_n": 200,
    "evaluate": "best_validation",
    "max_failures": 0,  # a killed trial errors out; `er-grid resume` brings it back
}

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def experiment(ray_head, tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("outputs")
    spec_file = tmp / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(SPEC))
    killed = run_cli(ray_head, "run", str(spec_file), "--storage", str(tmp / "s"),
                     ER_GRID_TEST_KILL_AFTER_BATCHES="1")
    assert killed.returncode == 1, killed.stdout[-3000:] + killed.stderr[-3000:]
    path = tmp / "s" / SPEC["experiment"]
    resumed = run_cli(ray_head, "resume", str(path))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return path


def trial_dirs(experiment: Path) -> list[Path]:
    return sorted(p for p in experiment.iterdir() if p.is_dir() and p.name.startswith("digits-"))


def test_two_checkpoints_kept_and_the_resumed_store_is_complete(experiment):
    dirs = trial_dirs(experiment)
    assert len(dirs) == 2
    for trial_dir in dirs:
        checkpoints = sorted(trial_dir.glob("checkpoint_*"))
        epochs = [json.loads((c / "epoch.json").read_text())["epoch"] for c in checkpoints]
        assert sorted(epochs) == [2, 3], trial_dir.name
    rows = load(experiment / "results")
    assert len(rows) == 2 * 2 * EVAL_N and not rows.duplicated(["trial_id", "attack", "eps", "sample_idx"]).any()


def test_codes_table_has_one_row_per_trial_example_and_kind(experiment):
    codes = load_codes(experiment / "results")
    assert len(codes) == 2 * EVAL_N * 2
    assert not codes.duplicated(["trial_id", "sample_idx", "kind"]).any()
    assert set(codes["kind"]) == {"natural", "adversarial"}
    assert set(codes["sample_idx"]) == set(er_core.data.eval_indices("digits", EVAL_N, 0).tolist())
    assert codes["code"].map(len).nunique() == 1  # one code size (digits: 16)
    # The natural predictions are the model's clean predictions stored with the results.
    rows = load(experiment / "results", attack="pgd")
    natural = codes[codes["kind"] == "natural"].merge(rows, on=["trial_id", "sample_idx"])
    assert len(natural) == 2 * EVAL_N and (natural["pred"] == natural["pred_clean"]).all()


def test_tsne_figure_has_four_panels_and_the_report_links_it(experiment, tmp_path):
    from grid.report.embedding_figure import embedding_figure, write_embedding_figures
    from grid.report.markdown import report_markdown

    written = write_embedding_figures(experiment / "results", tmp_path / "figs")
    assert [p.name for p in written] == ["embedding_digits.png", "embedding_digits.pdf"]
    codes = load_codes(experiment / "results")
    fig = embedding_figure(codes, "digits")
    assert len(fig.axes) == 4
    titles = [ax.get_title() for ax in fig.axes]
    assert titles[0].startswith("E-CLA") and titles[2].startswith("ER-Classifier−")
    for ax, method in zip(fig.axes[1::2], ("e_cla", "er_minus")):
        adversarial = codes[(codes["method"] == method) & (codes["kind"] == "adversarial")]
        fooled = bool((adversarial["pred"] != adversarial["label"]).any())
        assert len(ax.collections) == 1 + fooled  # dots, plus down triangles where PGD succeeded
        if fooled:  # the second marker is matplotlib's "v" (triangle down)
            reference = Figure().subplots().scatter([0], [0], marker="v").get_paths()[0].vertices
            assert (ax.collections[1].get_paths()[0].vertices == reference).all()
    assert all(len(ax.collections) == 1 for ax in fig.axes[0::2])  # natural panels: dots only
    text = report_markdown(load(experiment / "results"), figures=written, links_from=tmp_path)
    assert "![embedding_digits](figs/embedding_digits.png)" in text.split("## Figures 5/6")[1]
    settings = text.split("\n## Settings\n")[1]
    assert "steps=5" in settings and "n=40,seed=0" in settings and "code version" in settings


def test_load_model_predicts_the_stored_clean_labels(experiment):
    """With ``evaluate: best_validation`` the rows come from the best-validation weights, which every
    checkpoint carries beside the last epoch's: loading them reproduces the rows' predictions."""
    rows = load(experiment / "results", attack="pgd")
    trials = load_trials(experiment / "results").set_index("trial_id")
    data = er_core.data.load("digits")
    for trial_id, mine in rows.groupby("trial_id"):
        method = grid.load_model(str(experiment), trial_id, best_validation=True)
        assert method.loaded_epoch == trials.loc[trial_id, "evaluated_epoch"]
        losses = json.loads(trials.loc[trial_id, "losses_json"])
        readings = [e["val_pgd"] for e in losses]
        assert len(readings) == 3 and readings[method.loaded_epoch - 1] == max(readings)
        assert trials.loc[trial_id, "validation_n"] == 200 and trials.loc[trial_id, "recipe"] == "adam"
        assert json.loads(trials.loc[trial_id, "hyperparams_json"])["optimizer"] == "adam"
        mine = mine.sort_values("sample_idx")
        idx = torch.tensor(mine["sample_idx"].to_numpy())
        with torch.no_grad():
            pred = method.model(data.x_test[idx]).argmax(1)
        assert pred.tolist() == mine["pred_clean"].tolist()
        assert grid.load_model(str(experiment), trial_id, epoch=2) is not None
        with pytest.raises(ValueError, match="no checkpoint of epoch 1"):
            grid.load_model(str(experiment), trial_id, epoch=1)


def test_every_report_has_the_same_keys_and_status_estimates_time(experiment, capsys):
    from grid.cli import main

    for trial_dir in trial_dirs(experiment):
        reports = [json.loads(line) for line in (trial_dir / "result.json").read_text().splitlines() if line]
        ours = [{k for k in r if k in ("phase", "holdout_accuracy", "eval_batches_done", "eval_batches_total",
                                       "loss", "epoch", "val_pgd", "val_clean")} for r in reports]
        assert all(keys == ours[0] for keys in ours) and {"holdout_accuracy", "val_pgd"} <= ours[0], trial_dir.name
        train = [r for r in reports if r["phase"] == "train"]
        assert all(0.0 <= r["holdout_accuracy"] <= 1.0 for r in train)
        assert any(r["phase"] == "eval" for r in reports)
    assert main(["status", str(experiment)]) == 0  # reads Tune's state files; no Ray cluster needed
    assert "time remaining (estimate): 0.0 min" in capsys.readouterr().out


def test_damaged_codes_and_sanity_files_are_reported_and_resume_restores_them(experiment, ray_head, tmp_path):
    """A committed codes/ file and a sanity/ file of this grid, damaged in a copy of it:
    ``er-grid status`` names both, ``er-grid resume`` moves them aside and recomputes them, and
    the repaired store equals the undamaged one (``tools/compare_stores.py``)."""
    import shutil
    import subprocess
    import sys

    from ray_helpers import REPO

    copy = tmp_path / "copy"
    shutil.copytree(experiment, copy)
    results = copy / "results"
    codes_file = sorted((results / "codes").rglob("*.parquet"))[0]
    sanity_file = sorted((results / "sanity").rglob("*.parquet"))[-1]
    codes_file.write_bytes(codes_file.read_bytes()[:-40])   # truncated
    sanity_file.write_bytes(sanity_file.read_bytes() + b"x")  # changed
    shown = run_cli(ray_head, "status", str(copy))
    assert shown.returncode == 0, shown.stderr
    for damaged in (codes_file, sanity_file):
        assert f"damaged: {damaged.relative_to(results)}" in shown.stdout, shown.stdout
    assert shown.stdout.count("DAMAGED") == len({codes_file.name[:10], sanity_file.name[:10]})

    resumed = run_cli(ray_head, "resume", str(copy))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    after = run_cli(ray_head, "status", str(copy))
    assert "damaged 0" in after.stdout and "done 2" in after.stdout, after.stdout
    # _moved_aside/<UTC time>/<the file's own path>: each damaged file kept, nothing else moved.
    aside = sorted(Path(*p.relative_to(results / "_moved_aside").parts[1:])
                   for p in (results / "_moved_aside").rglob("*.parquet"))
    assert aside == sorted([codes_file.relative_to(results), sanity_file.relative_to(results)])
    shutil.rmtree(results / "_moved_aside")  # kept as evidence; not part of the comparison
    same = subprocess.run([sys.executable, "tools/compare_stores.py", str(experiment), str(copy)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout[-3000:]


@pytest.mark.parametrize("command", ["status", "query"])
def test_status_and_query_run_with_torch_unimportable(experiment, command):
    """``er-grid status`` and ``er-grid query`` read only er-grid's own JSON and parquet: they
    run in a process where importing torch fails, and query prints what it prints with torch."""
    import subprocess
    import sys

    from ray_helpers import REPO

    def run(block: bool) -> subprocess.CompletedProcess:
        code = ("import sys\n" + ("sys.modules['torch'] = None\n" if block else "")
                + f"from grid.cli import main\nsys.exit(main([{command!r}, {str(experiment)!r}]))")
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)

    without, with_torch = run(True), run(False)
    assert without.returncode == 0, without.stderr[-3000:]
    assert with_torch.returncode == 0, with_torch.stderr[-3000:]
    if command == "status":
        assert "done 2" in without.stdout
        # Every trial is DONE: nothing is left to price, so the estimate needs no cost model (torch).
        assert "time remaining (estimate): 0.0 min" in without.stdout
        assert without.stdout == with_torch.stdout
    else:
        assert without.stdout == with_torch.stdout and "worst_case" in without.stdout


def test_resume_of_a_finished_experiment_starts_no_ray(experiment):
    """Every trial DONE and intact: ``resume`` answers from the store; no Ray is initialised
    (no local head started, none joined: RAY_ADDRESS is unset for the process)."""
    import os
    import subprocess
    import sys

    from ray_helpers import REPO

    code = ("import ray\nfrom grid.run.resume import resume\n"
            f"summary = resume({str(experiment)!r})\n"
            "assert summary.ok and summary.trials == 2, summary\n"
            "assert not ray.is_initialized(), 'resume started Ray'\nprint('answered from the store')")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0 and "answered from the store" in done.stdout, done.stderr[-3000:]
