"""er_core.download against a local mirror (tests/dataset_files.py): tiny files in each exact
format, served over a real HTTP socket on 127.0.0.1. The sources keep the real file layout and
swap in the mirror's addresses and the tiny files' md5s; the real pins are checked against the
real MNIST where the data root has it."""

from __future__ import annotations

import dataclasses

import pytest
from dataset_files import Mirror, local_source, publish, real_mnist_folder

from er_core import data, download
from er_core.download import DownloadError

DATASETS = ("mnist", "cifar10", "stl10", "tiny_imagenet")


@pytest.fixture
def serve(tmp_path, monkeypatch):
    """``serve(name)`` → (Mirror, tree): the tiny dataset published on a running local mirror,
    registered as the source of ``name`` behind a dead first mirror."""
    mirrors = []

    def start(name: str, dead_first: bool = True):
        mirror_dir = tmp_path / "mirror"
        tree = publish(name, mirror_dir, tmp_path / "expected")
        mirror = Mirror(mirror_dir).__enter__()
        mirrors.append(mirror)
        dead = (tmp_path / "no-such-mirror").as_uri() + "/"
        urls = [dead, mirror.url] if dead_first else [mirror.url]
        monkeypatch.setitem(download.SOURCES, name, local_source(name, urls, mirror_dir, tree))
        return mirror, tree

    yield start
    for m in mirrors:
        m.__exit__(None, None, None)


@pytest.mark.parametrize("name", DATASETS)
def test_fetch_from_mirror_then_load_then_nothing_to_do(serve, tmp_path, name):
    mirror, tree = serve(name)
    folder = tmp_path / "data" / name
    assert download.check(name, folder)  # empty folder: problems listed
    download.fetch(name, folder)
    assert download.check(name, folder) == []
    assert not list(folder.rglob("*.part")) and not [p for p in folder.iterdir() if p.name.startswith(".")]
    fetched, expected = data.load(name, root=folder), data.load(name, root=tree)
    assert fetched.x_train.equal(expected.x_train) and fetched.y_test.equal(expected.y_test)
    served = len(mirror.requests)
    assert served == len(download.source(name).remotes)  # one GET per file, none ranged
    download.fetch(name, folder)  # complete: nothing downloaded again
    assert len(mirror.requests) == served


def test_interrupted_download_resumes_with_range(serve, tmp_path):
    mirror, _ = serve("cifar10", dead_first=False)
    archive = "cifar-10-python.tar.gz"
    size = (tmp_path / "mirror" / archive).stat().st_size
    mirror.cut[archive] = size // 3  # the connection drops after a third
    folder = tmp_path / "cifar10"
    with pytest.raises(DownloadError, match="connection closed"):
        download.fetch("cifar10", folder)
    part = folder / (archive + ".part")
    assert part.stat().st_size == size // 3 and not (folder / archive).exists()

    download.fetch("cifar10", folder)  # the next run continues from the part
    assert mirror.requests[-1] == (archive, f"bytes={size // 3}-")
    assert download.check("cifar10", folder) == [] and not part.exists()


def test_a_failed_fetch_leaves_no_folder_it_created_empty(tmp_path, monkeypatch):
    """No mirror reachable: the dataset folder, and the parents the fetch made for it, go again;
    a folder that was there before stays; a part holding bytes (resumable) keeps its folder."""
    src = download.source("stl10")
    dead = tuple(dataclasses.replace(r, urls=((tmp_path / "none").as_uri() + "/" + r.filename,)) for r in src.remotes)
    monkeypatch.setitem(download.SOURCES, "stl10", dataclasses.replace(src, remotes=dead))
    for folder in (tmp_path / "new-root" / "deeper" / "stl10", tmp_path / "stl10"):
        with pytest.raises(DownloadError, match="could not download"):
            download.fetch("stl10", folder)
        assert not folder.exists()
    assert not (tmp_path / "new-root").exists() and tmp_path.is_dir()
    kept = tmp_path / "kept"
    kept.mkdir()
    with pytest.raises(DownloadError):
        download.fetch("stl10", kept / "stl10")
    assert kept.is_dir() and not (kept / "stl10").exists()


def test_the_offline_route_needs_no_network(serve, tmp_path, monkeypatch):
    """What the failed fetch tells a user without a network (``offline_files``) is enough: the
    archive put into the folder by hand is unpacked and checked with every mirror dead."""
    mirror, _ = serve("cifar10", dead_first=False)
    assert download.offline_files("cifar10") == "cifar-10-python.tar.gz or the cifar-10-batches-py/ folder it holds"
    assert download.offline_files("mnist") == ("train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                                               "t10k-images-idx3-ubyte.gz and t10k-labels-idx1-ubyte.gz")
    src = download.source("cifar10")
    dead = tuple(dataclasses.replace(r, urls=((tmp_path / "none").as_uri() + "/" + r.filename,)) for r in src.remotes)
    monkeypatch.setitem(download.SOURCES, "cifar10", dataclasses.replace(src, remotes=dead))
    folder = tmp_path / "root" / "cifar10"
    folder.mkdir(parents=True)
    (folder / "cifar-10-python.tar.gz").write_bytes((tmp_path / "mirror" / "cifar-10-python.tar.gz").read_bytes())
    download.fetch("cifar10", folder)
    assert download.check("cifar10", folder) == [] and mirror.requests == []


def test_part_from_other_content_is_downloaded_again(serve, tmp_path):
    mirror, _ = serve("stl10", dead_first=False)
    folder = tmp_path / "stl10"
    folder.mkdir()
    (folder / "stl10_binary.tar.gz.part").write_bytes(b"\x1f\x8b" + b"junk" * 50)
    download.fetch("stl10", folder)
    assert [r for _, r in mirror.requests] == ["bytes=202-", None]  # resumed, md5 failed, fresh
    assert download.check("stl10", folder) == []


def test_mirror_with_wrong_content_is_refused(serve, tmp_path, monkeypatch):
    serve("mnist", dead_first=False)
    src = download.source("mnist")
    bad = dataclasses.replace(src.remotes[0], md5="0" * 32)
    monkeypatch.setitem(download.SOURCES, "mnist", dataclasses.replace(src, remotes=(bad, *src.remotes[1:])))
    folder = tmp_path / "mnist"
    with pytest.raises(DownloadError, match=r"train-images-idx3-ubyte.gz: .*md5 \w+, want 0{32}"):
        download.fetch("mnist", folder)
    assert not (folder / "train-images-idx3-ubyte.gz").exists()  # never under the real name
    assert not (folder / "train-images-idx3-ubyte.gz.part").exists()


def test_check_names_a_damaged_file(serve, tmp_path):
    serve("cifar10")
    folder = download.fetch("cifar10", tmp_path / "cifar10")
    batch = folder / "cifar-10-batches-py" / "data_batch_3"
    batch.write_bytes(batch.read_bytes()[:-1] + b"\0")
    (problem,) = download.check("cifar10", folder)
    assert str(batch) in problem and "md5" in problem
    download.fetch("cifar10", folder)  # repaired from the kept archive, the old tree moved aside
    assert download.check("cifar10", folder) == []
    assert [p.name.split("-")[0] for p in folder.iterdir() if ".damaged-" in p.name] == ["cifar"]


def test_tiny_imagenet_layout_check_finds_a_missing_image(serve, tmp_path):
    serve("tiny_imagenet")
    folder = download.fetch("tiny_imagenet", tmp_path / "tiny_imagenet")
    (folder / "tiny-imagenet-200" / "val" / "images" / "val_2.JPEG").unlink()
    (problem,) = download.check("tiny_imagenet", folder)
    assert "1 image(s)" in problem and "val_2.JPEG" in problem


def test_archive_with_a_path_out_of_the_folder_is_refused(tmp_path, monkeypatch):
    import io
    import tarfile

    mirror_dir = tmp_path / "mirror"
    mirror_dir.mkdir()
    with tarfile.open(mirror_dir / "stl10_binary.tar.gz", "w:gz") as t:
        info = tarfile.TarInfo("../escaped.txt")
        info.size = 3
        t.addfile(info, io.BytesIO(b"bad"))
    with Mirror(mirror_dir) as mirror:
        src = download.source("stl10")
        remote = dataclasses.replace(src.remotes[0], urls=(mirror.url + "stl10_binary.tar.gz",),
                                     md5=download.md5_of(mirror_dir / "stl10_binary.tar.gz"))
        monkeypatch.setitem(download.SOURCES, "stl10", dataclasses.replace(src, remotes=(remote,)))
        with pytest.raises(tarfile.OutsideDestinationError):
            download.fetch("stl10", tmp_path / "data" / "stl10")
    assert not (tmp_path / "data" / "escaped.txt").exists()


def test_every_source_pins_a_checksum_and_prefers_https():
    for name in DATASETS:
        src = download.source(name)
        assert src.remotes and all(len(r.md5) == 32 for r in src.remotes)
        assert all(r.urls[0].startswith("https://") for r in src.remotes), name
        assert set(data.LOADERS) - {"digits"} == set(download.SOURCES)
    with pytest.raises(ValueError, match="downloadable: mnist, cifar10"):
        download.source("digits")


def test_real_mnist_matches_the_pinned_checksums():
    assert download.check("mnist", real_mnist_folder()) == []


def test_load_with_download_fetches_into_the_dataset_folder(serve, tmp_path):
    mirror, tree = serve("mnist")
    d = data.load("mnist", root=tmp_path / "nb" / "mnist", download=True)
    assert d.x_train.equal(data.load("mnist", root=tree).x_train)
    assert len(mirror.requests) == 4
