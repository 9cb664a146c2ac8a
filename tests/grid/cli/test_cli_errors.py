"""``er-grid`` on bad input and hostile file systems: one line naming the field or the path,
exit code 2, no traceback, nothing already written lost. No Ray: every case must fail before
a trial (or a Ray head) would start.

Read-only folders: a ``chmod 555`` folder, or ``/sys`` where the tests run as root (root
writes through permission bits; sysfs refuses new files even to root). Disk full: writing to
``/dev/full`` fails with ENOSPC.

Runtime: ~4 s.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
import yaml

from grid.cli import main
from grid.store import ResultStore

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from full_grid import SMOKE  # noqa: E402


def one_line_error(capsys, *needles: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("er-grid: error:"), err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.fixture
def results(tmp_path) -> Path:
    """A tiny committed store: one trial, FGSM at ε 0.1, 4 examples."""
    root = tmp_path / "exp" / "results"
    rows = [{
        "train_eps": None, "lam": None, "seed": 0, "epochs": 1, "norm": "Linf", "sample_idx": i, "label": 1,
        "pred_clean": 1, "pred_adv": 1 if i % 2 else 2, "correct_clean": True, "correct_adv": bool(i % 2),
        "l2": 0.1, "l2_rms": 0.01, "linf": 0.1, "queries": -1, "seconds": 0.01, "attack_config": "{}",
        "checkpoint_hash": "abc", "eval_subset": "n=4,seed=0", "library_versions": "{}",
        "gradient_failed": False, "randomized": False,
    } for i in range(4)]
    ResultStore(root).write_batch(rows, experiment="e", dataset="digits", method="none", trial_id="t1",
                                  attack="fgsm", eps=0.1, batch=0)
    return root


def read_only_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "read-only"
    folder.mkdir()
    folder.chmod(0o555)
    if os.access(folder, os.W_OK):  # root: permission bits do not apply
        return Path("/sys")
    return folder


def write_spec(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)


# --------------------------------------------------------------------------- OS errors


def test_outputs_into_a_directory_read_only_folder_or_full_disk(results, tmp_path, capsys):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    read_only = read_only_folder(tmp_path)
    cases = [
        (["query", str(results), "--out", str(folder)], "is a directory"),
        (["query", str(results), "--format", "parquet", "--out", str(folder)], "is a directory"),
        (["report", str(results), "--out", str(folder)], "is a directory"),
        (["query", str(results), "--out", str(read_only / "q.csv")], str(read_only)),
        (["report", str(results), "--out", str(read_only / "r.md")], str(read_only)),
        (["report", str(results), "--figures", str(read_only / "figs")], str(read_only)),
        (["query", str(results), "--out", "/dev/full"], "No space left"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        one_line_error(capsys, needle)

    figures_file = tmp_path / "figures.png"
    figures_file.write_bytes(b"an earlier figure")
    assert main(["report", str(results), "--figures", str(figures_file)]) == 2
    one_line_error(capsys, "is a file")
    assert figures_file.read_bytes() == b"an earlier figure"


def test_a_failed_write_keeps_the_earlier_file(results, tmp_path, capsys):
    out = tmp_path / "summary.csv"
    assert main(["query", str(results), "--format", "csv", "--out", str(out)]) == 0
    before = out.read_text()
    capsys.readouterr()
    # The same output path, but the store is now damaged: the command fails before writing.
    next((results / "examples").rglob("*.parquet")).write_bytes(b"PAR1 cut short")
    assert main(["query", str(results), "--format", "csv", "--out", str(out)]) == 2
    one_line_error(capsys, "damaged", "t1__fgsm__eps0.1__b0.parquet")
    assert out.read_text() == before and before.count("\n") >= 2


def test_run_with_storage_that_is_a_file_or_read_only(tmp_path, capsys):
    spec = write_spec(tmp_path / "smoke.yaml", yaml.safe_dump(SMOKE))
    a_file = tmp_path / "storage-file"
    a_file.write_text("not a folder")
    assert main(["run", spec, "--storage", str(a_file)]) == 2
    one_line_error(capsys, str(a_file))
    assert a_file.read_text() == "not a folder"
    read_only = read_only_folder(tmp_path)
    assert main(["run", spec, "--storage", str(read_only / "storage")]) == 2
    one_line_error(capsys, str(read_only))


def test_damaged_spec_record_names_the_file(results, capsys):
    experiment = results.parent
    (experiment / "grid_spec.json").write_text('{"experiment": "e", "trials": {"t1": ')  # cut short
    assert main(["status", str(experiment)]) == 2
    one_line_error(capsys, "grid_spec.json", "damaged")
    assert main(["status", str(results)]) == 2  # the results folder means its experiment
    one_line_error(capsys, "grid_spec.json")


# --------------------------------------------------------------------------- specs


def smoke_with(**changes) -> str:
    return yaml.safe_dump(dict(SMOKE, **changes))


def pgd_options(**options) -> dict:
    return {"digits": [{"attack": "pgd", "eps": [0.1], "options": options}]}


@pytest.mark.parametrize("text, field", [
    (smoke_with(eval_plan=pgd_options(steps=2.5)), "steps must be an int, got 2.5"),
    (smoke_with(eval_plan=pgd_options(steps=True)), "steps must be an int, got True"),
    (smoke_with(eval_plan=pgd_options(steps=0)), "steps must be ≥ 1"),
    (smoke_with(eval_plan=pgd_options(step_size=-0.5)), "step_size must be > 0"),
    (smoke_with(eval_plan=pgd_options(seed="abc")), "seed must be an int"),
    (smoke_with(eval_plan={"digits": [{"attack": "rays", "eps": [0.1], "options": {"max_queries": 0}}]}),
     "max_queries"),
    (smoke_with(eval_plan={"digits": [{"attack": "cw_l2", "eps": [0.0], "options": {"lr": -1.0}}]}),
     "lr must be > 0"),
    (smoke_with(seeds=["abc"]), "spec.seeds[0]"),
    (smoke_with(epochs=True), "spec.epochs"),
    (smoke_with(epochs=2.0), "spec.epochs"),
    (smoke_with(hyperparams={"none": {"lr": "fast"}}), "spec.hyperparams.none.lr"),
    (smoke_with(hyperparams={"none": {"lr": -1}}), "lr=-1"),
    (smoke_with(hyperparams={"none": {"init_seed": True}}), "spec.hyperparams.none.init_seed"),
    (smoke_with(hyperparams={"madry": {"pgd_steps": 2.5}}), "spec.hyperparams.madry.pgd_steps"),
    (smoke_with(data_root="/nonexistent/er-grid-data"), "spec.data_root"),
    (yaml.safe_dump(SMOKE) + "epochs: 500\n", "spec.epochs: given twice"),
])
def test_bad_specs_exit_2_naming_the_field_before_anything_runs(text, field, tmp_path, capsys):
    storage = tmp_path / "storage"
    assert main(["run", write_spec(tmp_path / "bad.yaml", text), "--storage", str(storage)]) == 2
    one_line_error(capsys, field)
    assert not storage.exists()  # nothing created, no trial started


def test_a_huge_eps_range_is_refused_in_under_a_second(tmp_path, capsys):
    from grid.spec import GridSpec

    GridSpec.from_dict(SMOKE)  # imports (torch, er_core) paid before the clock starts
    for step, count in [(1e-9, "1,000,000,001"), (1e-6, "1,000,001"), (5e-324, "more than 10^308")]:
        text = smoke_with(eval_plan={"digits": [{"attack": "fgsm", "eps": {"start": 0.0, "stop": 1.0, "step": step}}]})
        started = time.perf_counter()
        assert main(["run", write_spec(tmp_path / "range.yaml", text), "--storage", str(tmp_path / "s")]) == 2
        assert time.perf_counter() - started < 1.0
        one_line_error(capsys, "eval_plan.digits[0].eps.step", count, "at most 1000")
