"""Where the job files put results when ``--storage`` is not given: a folder of the user's own
(``$XDG_DATA_HOME/er-grid/results``, else ``~/.local/share/er-grid/results``), created readable
by its owner only, never a machine-wide one where a job would resume another user's experiment;
the job says where before it starts (a dry run: where they would go, writing nothing)."""

from __future__ import annotations

import importlib
import stat
import sys
from pathlib import Path

import pytest

from grid.cli.job import job_main
from grid.common.locations import default_storage, make_private

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))


def test_default_storage_is_under_the_users_own_data_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert default_storage() == str(tmp_path / "xdg" / "er-grid" / "results")
    monkeypatch.setenv("XDG_DATA_HOME", "relative/data")  # the XDG rule: a relative value is ignored
    assert default_storage() == str(tmp_path / "home" / ".local" / "share" / "er-grid" / "results")
    monkeypatch.delenv("XDG_DATA_HOME")
    assert default_storage() == str(tmp_path / "home" / ".local" / "share" / "er-grid" / "results")


def test_make_private_creates_owner_only_folders_and_leaves_existing_ones_alone(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    home.chmod(0o755)
    make_private(str(home / "share" / "er-grid" / "results"))
    for made in (home / "share", home / "share" / "er-grid", home / "share" / "er-grid" / "results"):
        assert stat.S_IMODE(made.stat().st_mode) == 0o700, made
    assert stat.S_IMODE(home.stat().st_mode) == 0o755
    make_private(str(home / "share" / "er-grid" / "results"))  # there already: nothing to do


@pytest.mark.parametrize("job", ["full_grid", "detection", "fidelity"])
def test_job_presets_leave_storage_to_the_default(job):
    presets = importlib.import_module(job)
    for name in ("PAPER", "SMOKE"):
        assert "storage_path" not in getattr(presets, name), f"jobs/{job}.py {name} names its own storage"


def test_the_dry_run_says_where_results_would_go_and_writes_nothing(tmp_path, monkeypatch, capsys):
    from full_grid import SMOKE

    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg"))
    assert job_main({"smoke": SMOKE}, default="smoke", argv=["--dry-run"]) == 0
    assert capsys.readouterr().out.endswith(f"results would go to: {tmp_path / 'xdg' / 'er-grid' / 'results' / 'smoke'}\n")
    assert not (tmp_path / "xdg").exists()
    assert job_main({"smoke": SMOKE}, default="smoke", argv=["--dry-run", "--storage", str(tmp_path / "mine")]) == 0
    assert capsys.readouterr().out.endswith(f"results would go to: {tmp_path / 'mine' / 'smoke'}\n")
