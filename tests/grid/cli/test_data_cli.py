"""``er-grid data fetch|check`` end to end through ``grid.cli.main``, against a local HTTP
mirror of tiny files in the exact formats (tests/dataset_files.py)."""

from __future__ import annotations

import dataclasses

import pytest
from dataset_files import Mirror, local_source, publish

from er_core import data, download
from grid.cli import main


@pytest.fixture
def mnist_mirror(tmp_path, monkeypatch):
    mirror_dir = tmp_path / "mirror"
    tree = publish("mnist", mirror_dir, tmp_path / "expected")
    with Mirror(mirror_dir) as mirror:
        monkeypatch.setitem(download.SOURCES, "mnist", local_source("mnist", [mirror.url], mirror_dir, tree))
        yield mirror


def test_fetch_then_check_in_the_default_data_root(mnist_mirror, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(data.DATA_ROOT_ENV, str(tmp_path / "root"))
    assert main(["data", "check", "mnist"]) == 1
    assert "not fetched" in capsys.readouterr().out
    assert main(["data", "fetch", "mnist"]) == 0
    assert f"mnist: ok ({tmp_path / 'root' / 'mnist'})" in capsys.readouterr().out
    assert data.load("mnist").x_test.shape == (3, 1, 28, 28)  # where the loaders look
    assert main(["data", "check", "mnist"]) == 0

    # Every dataset when NAME is left out: the others are reported missing, exit 1.
    assert main(["data", "check"]) == 1
    out = capsys.readouterr().out
    assert "mnist: ok" in out and all(f"{n}: not fetched" in out for n in ("cifar10", "stl10", "tiny_imagenet"))


def test_check_names_the_damaged_file_and_the_fix(mnist_mirror, tmp_path, capsys):
    root = tmp_path / "root"
    assert main(["data", "fetch", "mnist", "--root", str(root)]) == 0
    labels = root / "mnist" / "t10k-labels-idx1-ubyte.gz"
    labels.write_bytes(b"not gzip")
    capsys.readouterr()
    assert main(["data", "check", "mnist", "--root", str(root)]) == 1
    out = capsys.readouterr().out
    assert f"{labels}: unreadable" in out and f"er-grid data fetch mnist --root {root}" in out
    assert main(["data", "fetch", "mnist", "--root", str(root)]) == 0  # re-fetches just that file
    assert mnist_mirror.requests[-1] == ("t10k-labels-idx1-ubyte.gz", None)
    assert main(["data", "check", "mnist", "--root", str(root)]) == 0


def test_unreachable_mirrors_give_the_error_and_the_offline_route_and_exit_2(tmp_path, monkeypatch, capsys):
    src = download.source("stl10")
    dead = tuple(dataclasses.replace(r, urls=((tmp_path / "none").as_uri() + "/" + r.filename,))
                 for r in src.remotes)
    monkeypatch.setitem(download.SOURCES, "stl10", dataclasses.replace(src, remotes=dead))
    root = tmp_path / "root"
    assert main(["data", "fetch", "stl10", "--root", str(root)]) == 2
    error, offline = capsys.readouterr().err.strip().split("\n")  # the error, then the offline route
    assert error.startswith("er-grid: error: could not download stl10_binary.tar.gz")
    assert offline == (f"without a network: put stl10's standard files (stl10_binary.tar.gz or the stl10_binary/ "
                       f"folder it holds) in {root / 'stl10'} (under the data root {root}; formats in "
                       f"er_core/data.py), then run er-grid data fetch stl10 --root {root} again: it downloads "
                       "nothing that is there and intact, unpacks the archive and checks the files")
    assert not root.exists()  # nothing left behind: no empty folder to mistake for a dataset
    with pytest.raises(SystemExit) as e:
        main(["data", "fetch", "svhn"])
    assert e.value.code == 2
