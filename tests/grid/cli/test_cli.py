"""``er-grid`` without Ray: user errors, query/report on a hand-written store, job dry runs,
and the job's runtime environment (what ``ray job submit --working-dir .`` would upload).

Runtime: ~5 s.
"""

from __future__ import annotations

import io
import sys
import zipfile
from pathlib import Path

import pandas as pd
import pytest
import yaml

from grid.cli import main
from grid.cli.job import job_main
from grid.store import ResultStore

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from full_grid import PAPER, SMOKE  # noqa: E402


def row(sample_idx: int, correct_adv: bool, attack: str, correct_clean: bool = True) -> dict:
    return {
        "train_eps": None, "lam": None, "seed": 0, "epochs": 2, "norm": "Linf",
        "sample_idx": sample_idx, "label": 1, "pred_clean": 1 if correct_clean else 2,
        "pred_adv": 1 if correct_adv else 3, "correct_clean": correct_clean, "correct_adv": correct_adv,
        "l2": 0.1, "l2_rms": 0.01, "linf": 0.1, "queries": -1, "seconds": 0.01,
        "attack_config": f'{{"attack":"{attack}"}}', "checkpoint_hash": "abc", "eval_subset": "n=4,seed=0",
        "library_versions": "{}", "gradient_failed": False, "randomized": False,
    }


@pytest.fixture
def results(tmp_path) -> Path:
    """Two attacks at ε 0.1 on 4 examples of one trial: pgd breaks #1, fgsm breaks #2; #3 is
    wrong clean. Robust: pgd 2/4, fgsm 2/4, worst case 1/4 (only #0 survives both)."""
    root = tmp_path / "results"
    store = ResultStore(str(root))
    outcome = {"pgd": [True, False, True, True], "fgsm": [True, True, False, True]}
    for attack, correct in outcome.items():
        rows = [row(i, c, attack, correct_clean=(i != 3)) for i, c in enumerate(correct)]
        store.write_batch(rows, experiment="e", dataset="digits", method="none", trial_id="t1",
                          attack=attack, eps=0.1, batch=0)
    return root


def test_query_gives_each_attack_and_the_worst_case(results, capsys, tmp_path):
    assert main(["query", str(results), "--format", "csv"]) == 0
    table = pd.read_csv(io.StringIO(capsys.readouterr().out)).set_index("attack")
    assert table.loc["pgd", "robust_accuracy"] == 0.5
    assert table.loc["fgsm", "robust_accuracy"] == 0.5
    assert table.loc["worst_case", "robust_accuracy"] == 0.25
    assert (table["clean_accuracy"] == 0.75).all()

    # The attack filter selects table rows; the worst case still sees every attack.
    out = tmp_path / "q.parquet"
    assert main(["query", str(results), "--attack", "worst_case", "--format", "parquet", "--out", str(out)]) == 0
    written = pd.read_parquet(out)
    assert list(written["attack"]) == ["worst_case"] and written["robust_accuracy"].iloc[0] == 0.25

    assert main(["query", str(results), "--by", "dataset,attack", "--no-worst-case"]) == 0
    text = capsys.readouterr().out
    assert "worst_case" not in text and "pgd" in text and "0.500" in text


def test_skip_damaged_warns_once_and_leaves_the_damaged_file_out(results, capsys):
    # A second trial whose one batch is then damaged: left out, t1's table stays as it was.
    ResultStore(str(results)).write_batch([row(i, False, "pgd") for i in range(4)], experiment="e",
                                          dataset="digits", method="none", trial_id="t2", attack="pgd",
                                          eps=0.1, batch=0)
    damaged = next(results.rglob("t2__pgd__*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-10])  # truncated: no longer what was committed
    assert main(["query", str(results), "--format", "csv"]) == 2
    assert damaged.name in capsys.readouterr().err

    assert main(["query", str(results), "--format", "csv", "--skip-damaged"]) == 0
    captured = capsys.readouterr()
    warnings = captured.err.splitlines()
    assert len(warnings) == 1 and "warning" in warnings[0] and damaged.name in warnings[0]
    table = pd.read_csv(io.StringIO(captured.out)).set_index("attack")
    assert table.loc["pgd", "robust_accuracy"] == 0.5 and table.loc["worst_case", "robust_accuracy"] == 0.25


def test_skip_damaged_also_leaves_damaged_files_out_of_the_recomputed_flags(results, capsys):
    # t2 keeps an intact fgsm batch, so its flags are recomputed (it has no stored flags file)
    # from rows that must leave its damaged pgd batch out, as the table does.
    store = ResultStore(str(results))
    for attack in ("fgsm", "pgd"):
        store.write_batch([row(i, False, attack) for i in range(4)], experiment="e", dataset="digits",
                          method="none", trial_id="t2", attack=attack, eps=0.1, batch=0)
    damaged = next(results.rglob("t2__pgd__*.parquet"))
    damaged.write_bytes(damaged.read_bytes()[:-10])
    assert main(["query", str(results), "--format", "csv", "--skip-damaged"]) == 0
    captured = capsys.readouterr()
    assert damaged.name in captured.err
    table = pd.read_csv(io.StringIO(captured.out)).set_index("attack")
    assert table.loc["fgsm", "robust_accuracy"] == 0.25  # the mean of t1 (2/4) and t2 (0/4)
    assert table.loc["fgsm", "runs"] == 2 and table.loc["pgd", "runs"] == 1


def test_report_prints_markdown_tables(results, capsys):
    assert main(["report", str(results)]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# ER-Grid results")
    assert "50.0 (15.0–85.0) [n=4]" in text  # PGD at ε 0.1 (2 of 4 robust), in %


def test_report_writes_figures(results, tmp_path):
    figures = tmp_path / "figures"
    assert main(["report", str(results), "--figures", str(figures)]) == 0
    written = sorted(p.name for p in figures.iterdir())
    assert written == ["figure3.pdf", "figure3.png"]
    assert (figures / "figure3.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("argv, message", [
    (["run", "no-such-spec.yaml"], "no such file"),
    (["resume", "."], "not a Ray Tune experiment folder"),
    (["status", "."], "not an experiment folder"),
    (["query", "no-such-dir"], "does not exist"),
    (["query", "."], "holds no results"),
    (["report", "."], "holds no results"),
])
def test_user_errors_exit_2_with_one_line(argv, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("er-grid: error:") and message in err and "Traceback" not in err


def test_invalid_spec_names_the_field(tmp_path, capsys):
    spec = dict(SMOKE, methods=["none", "not_a_method"])
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(spec))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert "spec.methods" in err and "not_a_method" in err


@pytest.mark.parametrize("argv, message", [
    (["--method", "madry"], "--method: no rows for madry (valid here: none)"),  # `none` is the method
    # A typo beside a value that matches is refused too: it would drop out silently.
    (["--method", "none", "madyr"], "--method: no rows for madyr (valid here: none)"),
    (["--eps", "0.3"], "--eps: no rows for 0.3 (valid here: 0.1)"),
    (["--dataset", "mnits"], "--dataset: no rows for mnits (valid here: digits)"),
    (["--experiment", "x"], "--experiment: no rows for x (valid here: e)"),
    (["--by", "method,atack"], "--by: unknown column(s) atack; valid: experiment, trial_id"),
    (["--by", ","], "--by: give at least one column"),
])
def test_query_filters_that_match_nothing_name_the_valid_values(results, capsys, argv, message):
    assert main(["query", str(results), *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("er-grid: error:") and message in err and err.count("\n") == 1, err


def test_dry_run_prints_trials_and_gpu_hours(capsys):
    assert job_main({"paper": PAPER, "smoke": SMOKE}, default="paper", argv=["--dry-run"]) == 0
    text = capsys.readouterr().out
    # Per dataset and seed: none, rse, e_cla, vae_cla (1 each) + madry, trades (1 training ε each)
    # + er, er_trades (1 ε × 3 λ each) + er_minus (3 λ) = 15; MNIST and CIFAR10 run 3 seeds.
    assert "120 trials (mnist: 45, cifar10: 45, stl10: 15, tiny_imagenet: 15)" in text
    assert "GPU-hours" in text and text.count("mnist-") == 45
    assert job_main({"paper": PAPER, "smoke": SMOKE}, default="paper", argv=["--preset", "smoke", "--dry-run"]) == 0
    assert "3 trials (digits: 3); evaluation rows: 720" in capsys.readouterr().out


def test_job_runtime_env_leaves_out_venv_git_data_results(tmp_path):
    """The zip ``ray job submit --working-dir .`` would upload, built by Ray's own packager
    from jobs/runtime_env.yaml's excludes alone (.gitignore not consulted)."""
    from ray._private.runtime_env.packaging import create_package

    excludes = yaml.safe_load((REPO / "jobs" / "runtime_env.yaml").read_text())["excludes"]
    package = tmp_path / "working_dir.zip"
    create_package(str(REPO), package, include_gitignore=False, excludes=excludes)
    names = zipfile.ZipFile(package).namelist()
    assert "jobs/full_grid.py" in names and "grid/trial/trainable.py" in names and "er_core/train.py" in names
    # Nothing under them is uploaded (an empty folder's own entry, e.g. a results/ a test made
    # and emptied again, carries no bytes).
    for top in (".venv/", ".git/", "data/", "results/"):
        assert not any(n.startswith(top) and n != top for n in names), top
    assert package.stat().st_size < 100 * 2**20


def test_cluster_yaml_is_valid_and_locked_down():
    """cluster.yaml passes Ray's own cluster-config schema; head has no GPU and runs no trials;
    GPU workers autoscale from 0; every node starts with token auth; the dashboard stays local."""
    from ray.autoscaler._private.util import prepare_config, validate_config

    config = yaml.safe_load((REPO / "cluster.yaml").read_text())
    validate_config(prepare_config(dict(config)))
    nodes = config["available_node_types"]
    assert nodes[config["head_node_type"]]["resources"] == {"CPU": 0, "GPU": 0}
    (worker,) = [n for name, n in nodes.items() if name != config["head_node_type"]]
    assert worker["min_workers"] == 0 < worker["max_workers"]
    assert worker["node_config"]["InstanceType"].startswith(("g", "p"))  # AWS GPU families
    starts = config["head_start_ray_commands"][1:] + config["worker_start_ray_commands"][1:]
    assert all("RAY_AUTH_MODE=token" in command for command in starts)
    assert "--dashboard-host=127.0.0.1" in config["head_start_ray_commands"][1]
    assert "0.0.0.0" not in (REPO / "cluster.yaml").read_text()
    assert "~/.ray/auth_token" in config["file_mounts"]


def test_multi_node_spec_with_local_storage_is_refused(tmp_path, capsys):
    path = tmp_path / "multi.yaml"
    path.write_text(yaml.safe_dump(dict(SMOKE, num_nodes=2, storage_path="s3://bucket/grid")))
    # --storage replaces the spec's S3 URI before validation: a local path on 2 nodes is refused.
    assert main(["run", str(path), "--storage", str(tmp_path / "local")]) == 2
    err = capsys.readouterr().err
    assert "spec.storage_path" in err and "num_nodes=2" in err
