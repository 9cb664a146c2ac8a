"""Put a dataset's standard on-disk files into its folder, and check files already there.

``fetch(name, folder)`` downloads what is missing (mirrors tried in order, every file checked
against a pinned checksum, an interrupted transfer resumed from its ``.part`` file with an
HTTP Range request, a progress bar on a terminal), unpacks archives, then runs ``check``. A fetch
that fails leaves no folder it created empty behind (a ``.part`` holding bytes stays, to be
resumed); :func:`offline_files` names what to put in the folder by hand where no mirror is reachable.
``check(name, folder)`` → list of problems (empty: the folder is complete and every pinned
checksum matches). ``folder`` is the dataset's own folder, e.g. ``~/er-grid-data/mnist``
(er_core.data's ``default_root(name)``); the layouts are described in er_core/data.py.

Where the checksums come from:

- mnist: md5 of each file's *uncompressed* content, the same on every mirror even where a
  mirror re-compressed the gzip (the gzip bytes differ between copies, the IDX bytes do not).
- cifar10, stl10: the md5 of the archive and of each unpacked file as pinned by torchvision
  (computed from the archives the authors publish).
- tiny_imagenet: Stanford publishes no checksum. The md5 pinned here (and the archive's size,
  248,100,043 bytes) is the one independent downloaders agree on, e.g. the Avalanche
  continual-learning library; the https address is tried first, plain http only as a mirror
  (the checksum protects both).

Archives are kept beside what they unpack to, so ``check`` can verify them and a second
``fetch`` downloads nothing.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tarfile
import tempfile
import time
import urllib.error
import urllib.request
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

CHUNK = 1 << 20
TIMEOUT_S = 60


class DownloadError(OSError):
    """Every mirror of a file failed, or the fetched dataset does not pass its check."""


@dataclass(frozen=True)
class Remote:
    """One file to download: its name in the dataset folder, its mirrors (tried in order)
    and its md5 (of the gunzipped content when ``gunzip``)."""

    filename: str
    urls: tuple[str, ...]
    md5: str
    gunzip: bool = False


@dataclass(frozen=True)
class Source:
    """Where a dataset comes from and what a complete folder holds.

    ``files``: path inside the folder → md5 of that file (None: must exist, not pinned);
    ``gunzip_md5``: the md5s in ``files`` are of the gunzipped content; ``unpack``: the
    archive among ``remotes`` to unpack, giving the folder ``unpacked``; ``layout``: an
    extra check of a tree too large to pin file by file (folder → problems).
    """

    homepage: str
    remotes: tuple[Remote, ...]
    files: dict[str, str | None]
    gunzip_md5: bool = False
    unpack: str | None = None
    unpacked: str | None = None
    layout: Callable[[Path], list[str]] | None = field(default=None, compare=False)


def _tiny_imagenet_layout(folder: Path) -> list[str]:
    """Every wnid has training images, and every validation image named in
    val_annotations.txt exists (110,000 files: listed, not hashed)."""
    base = folder / "tiny-imagenet-200"
    try:
        wnids = [w.strip() for w in (base / "wnids.txt").read_text().splitlines() if w.strip()]
        annotations = (base / "val" / "val_annotations.txt").read_text().splitlines()
    except OSError as e:
        return [f"{e.filename}: {e.strerror}"]
    problems = [f"{base / 'train' / w / 'images'}: no *.JPEG files" for w in wnids
                if not any((base / "train" / w / "images").glob("*.JPEG"))]
    present = {p.name for p in (base / "val" / "images").glob("*.JPEG")}
    missing = [line.split("\t")[0] for line in annotations if line.strip() and line.split("\t")[0] not in present]
    if missing:
        problems.append(f"{base / 'val' / 'images'}: {len(missing)} image(s) named in val_annotations.txt "
                        f"are missing (first: {missing[0]})")
    return problems


MNIST_MIRRORS = ("https://ossci-datasets.s3.amazonaws.com/mnist/", "http://yann.lecun.com/exdb/mnist/")
MNIST_MD5 = {  # md5 of each file's uncompressed IDX content
    "train-images-idx3-ubyte.gz": "6bbc9ace898e44ae57da46a324031adb",
    "train-labels-idx1-ubyte.gz": "a25bea736e30d166cdddb491f175f624",
    "t10k-images-idx3-ubyte.gz": "2646ac647ad5339dbf082846283269ea",
    "t10k-labels-idx1-ubyte.gz": "27ae3e4e09519cfbb04c329615203637",
}
CIFAR_ARCHIVE = "cifar-10-python.tar.gz"
STL_ARCHIVE = "stl10_binary.tar.gz"
TINY_ARCHIVE = "tiny-imagenet-200.zip"

SOURCES: dict[str, Source] = {
    "mnist": Source(
        "http://yann.lecun.com/exdb/mnist/",
        tuple(Remote(f, tuple(m + f for m in MNIST_MIRRORS), md5, gunzip=True) for f, md5 in MNIST_MD5.items()),
        dict(MNIST_MD5), gunzip_md5=True,
    ),
    "cifar10": Source(
        "https://www.cs.toronto.edu/~kriz/cifar.html",
        (Remote(CIFAR_ARCHIVE, ("https://www.cs.toronto.edu/~kriz/" + CIFAR_ARCHIVE,),
                "c58f30108f718f92721af3b95e74349a"),),
        {
            "cifar-10-batches-py/data_batch_1": "c99cafc152244af753f735de768cd75f",
            "cifar-10-batches-py/data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
            "cifar-10-batches-py/data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
            "cifar-10-batches-py/data_batch_4": "634d18415352ddfa80567beed471001a",
            "cifar-10-batches-py/data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
            "cifar-10-batches-py/test_batch": "40351d587109b95175f43aff81a1287e",
        },
        unpack=CIFAR_ARCHIVE, unpacked="cifar-10-batches-py",
    ),
    "stl10": Source(
        "https://cs.stanford.edu/~acoates/stl10/",
        (Remote(STL_ARCHIVE, ("https://cs.stanford.edu/~acoates/stl10/" + STL_ARCHIVE,
                              "http://ai.stanford.edu/~acoates/stl10/" + STL_ARCHIVE),
                "91f7769df0f17e558f3565bffb0c7dfb"),),
        {
            "stl10_binary/train_X.bin": "918c2871b30a85fa023e0c44e0bee87f",
            "stl10_binary/train_y.bin": "5a34089d4802c674881badbb80307741",
            "stl10_binary/test_X.bin": "7f263ba9f9e0b06b93213547f721ac82",
            "stl10_binary/test_y.bin": "36f9794fa4beb8a2c72628de14fa638e",
        },
        unpack=STL_ARCHIVE, unpacked="stl10_binary",
    ),
    "tiny_imagenet": Source(
        "https://cs231n.stanford.edu/",
        (Remote(TINY_ARCHIVE, ("https://cs231n.stanford.edu/" + TINY_ARCHIVE,
                               "http://cs231n.stanford.edu/" + TINY_ARCHIVE),
                "90528d7ca1a48142e341f4ef8d21d0de"),),
        {"tiny-imagenet-200/wnids.txt": None, "tiny-imagenet-200/val/val_annotations.txt": None},
        unpack=TINY_ARCHIVE, unpacked="tiny-imagenet-200", layout=_tiny_imagenet_layout,
    ),
}


def source(name: str) -> Source:
    if name not in SOURCES:
        raise ValueError(f"no download for dataset {name!r}; downloadable: {', '.join(SOURCES)}")
    return SOURCES[name]


def offline_files(name: str) -> str:
    """The standard files to copy into the dataset's folder by hand for ``fetch`` and ``check`` to
    pass without a network, as a phrase: the downloaded files themselves, or for an archive either
    the archive (``fetch`` then unpacks it and downloads nothing) or the folder it unpacks to."""
    src = source(name)
    if src.unpack is not None and src.unpacked is not None:
        return f"{src.unpack} or the {src.unpacked}/ folder it holds"
    names = [remote.filename for remote in src.remotes]
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} and {names[-1]}"


# ---------------------------------------------------------------- checking


def md5_of(path: Path, gunzip: bool = False) -> str:
    """md5 of the file's bytes (of its gunzipped content when ``gunzip``), read in chunks."""
    digest = hashlib.md5()
    with (gzip.open(path, "rb") if gunzip else open(path, "rb")) as f:
        while chunk := f.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _md5_problem(path: Path, want: str, gunzip: bool) -> str | None:
    try:
        got = md5_of(path, gunzip)
    except (OSError, EOFError) as e:  # gzip.BadGzipFile is an OSError
        return f"{path}: unreadable ({type(e).__name__}: {e})"
    return None if got == want else f"{path}: md5 {got}, want {want}"


def _file_problems(src: Source, folder: Path) -> dict[str, str]:
    """Path in the folder → problem, for each of ``src.files`` that is missing or fails its md5."""
    problems = {}
    for rel, want in src.files.items():
        path = folder / rel
        if not path.is_file():
            problems[rel] = f"{path}: missing"
        elif want is not None and (p := _md5_problem(path, want, src.gunzip_md5)):
            problems[rel] = p
    return problems


def _tree_problems(src: Source, files: dict[str, str], folder: Path) -> list[str]:
    """Problems with the files a loader reads (not the archive they came from), given
    ``_file_problems``: those, or when there are none, the layout check's."""
    problems = list(files.values())
    if not problems and src.layout is not None:
        problems += src.layout(folder)
    return problems


def _kept_archive_problems(src: Source, folder: Path) -> dict[str, str]:
    """Remote filename → problem, for each downloaded file kept beside what a loader reads
    (an archive) that fails its md5. An archive that is not there is no problem."""
    problems = {}
    for remote in src.remotes:
        path = folder / remote.filename
        if remote.filename not in src.files and path.is_file():
            if p := _md5_problem(path, remote.md5, remote.gunzip):
                problems[remote.filename] = p
    return problems


def check(name: str, folder: str | os.PathLike) -> list[str]:
    """Problems with ``folder`` as the dataset ``name`` (empty list: complete and intact).

    Checks every file in the source's ``files`` (present; md5 where pinned), the source's
    layout check, and a kept archive against its md5."""
    src, folder = source(name), Path(folder)
    tree = _tree_problems(src, _file_problems(src, folder), folder)
    return tree + list(_kept_archive_problems(src, folder).values())


# ---------------------------------------------------------------- downloading


def _transfer(url: str, part: Path, desc: str, progress: bool | None) -> None:
    """Download ``url`` into ``part``, continuing after the bytes already there when the
    server honours a Range request (HTTP 206); otherwise from the start."""
    from tqdm import tqdm

    start = part.stat().st_size if part.is_file() else 0
    headers = {"User-Agent": "er-grid"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=TIMEOUT_S)
    except urllib.error.HTTPError as e:
        if e.code == 416 and start:  # the part already holds the whole file: checked next
            return
        raise
    with response:
        resumed = start > 0 and getattr(response, "status", None) == 206
        if not resumed:
            start = 0  # no Range support (or file://): start over rather than append twice
        length = response.headers.get("Content-Length")
        total = start + int(length) if length and length.isdigit() else None
        with open(part, "ab" if resumed else "wb") as out, tqdm(
            total=total, initial=start, unit="B", unit_scale=True, unit_divisor=1024,
            desc=desc, disable=None if progress else True, leave=False,
        ) as bar:
            while chunk := response.read(CHUNK):
                out.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(f"connection closed after {size} of {total} bytes (run again to resume)")


def download_file(remote: Remote, folder: Path, progress: bool | None = None) -> Path:
    """``folder/remote.filename``, downloaded through ``folder/<name>.part`` and renamed only
    once its md5 matches, so the real name never holds a partial or wrong file.

    A ``.part`` left by an interrupted run is resumed. A mismatching md5 after a resume means
    the old part came from other content: that mirror is tried once more from byte 0."""
    dest, part = folder / remote.filename, folder / (remote.filename + ".part")
    errors = []
    for url in remote.urls:
        for attempt in ("resume", "fresh"):
            resumed = part.is_file() and part.stat().st_size > 0
            try:
                _transfer(url, part, remote.filename, progress)
            except (OSError, ValueError) as e:  # URLError/HTTPError are OSErrors; ValueError: bad URL
                errors.append(f"{url}: {e}")
                break  # keep the part: the next mirror (or the next run) continues it
            if (problem := _md5_problem(part, remote.md5, remote.gunzip)) is None:
                os.replace(part, dest)
                return dest
            part.unlink()
            errors.append(f"{url}: {problem.split(': ', 1)[1]}")
            if attempt == "resume" and not resumed:
                break
    raise DownloadError(f"could not download {remote.filename}: " + "; ".join(errors))


def _unpack(archive: Path, folder: Path, unpacked: str) -> None:
    """Unpack ``archive`` in a temporary folder beside it, then rename ``unpacked`` into
    place: a run killed mid-way leaves no half tree under the real name. A damaged tree
    already there is moved aside (``<name>.damaged-<time>``), not deleted."""
    staging = Path(tempfile.mkdtemp(prefix=f".{unpacked}.unpack-", dir=folder))
    try:
        if archive.name.endswith(".zip"):
            with zipfile.ZipFile(archive) as z:  # zipfile drops absolute paths and '..' parts
                z.extractall(staging)
        else:
            with tarfile.open(archive) as t:
                t.extractall(staging, filter="data")  # refuses links and paths out of staging
        if not (staging / unpacked).is_dir():
            raise DownloadError(f"{archive}: holds no {unpacked}/ folder")
        target = folder / unpacked
        if target.exists():
            aside = folder / f"{unpacked}.damaged-{time.strftime('%Y%m%d-%H%M%S')}"
            os.replace(target, aside)
            print(f"moved the incomplete {target} aside to {aside}")
        os.replace(staging / unpacked, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def _missing_folders(folder: Path) -> list[Path]:
    """``folder`` and its parents that do not exist yet, deepest first."""
    missing = []
    while not folder.exists():
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(src: Source, folder: Path, created: list[Path]) -> None:
    """After a failed fetch: empty ``.part`` files (no progress to resume) go, then each of the
    ``created`` folders that is left empty; a ``.part`` holding bytes keeps its folder."""
    for remote in src.remotes:
        part = folder / (remote.filename + ".part")
        if part.is_file() and part.stat().st_size == 0:
            part.unlink()
    for path in created:
        try:
            path.rmdir()
        except OSError:  # not empty (a resumable .part), or not ours to remove after all
            return


def fetch(name: str, folder: str | os.PathLike, progress: bool | None = None) -> Path:
    """Make ``folder`` a complete copy of dataset ``name``; returns the folder.

    Nothing is downloaded when ``check`` finds it complete. Raises :class:`DownloadError`
    when every mirror of a file fails or the result does not pass ``check``."""
    src, folder = source(name), Path(folder).expanduser()
    # Every checksum is computed once up front (what check does) and decides both what to
    # download and whether to unpack: archives and trees run to gigabytes. Downloads write
    # only their own file, so the tree's problems still hold after them. A remote that is one
    # of ``files`` (mnist's gzips) is judged by its entry there, which pins the same md5.
    files, archives = _file_problems(src, folder), _kept_archive_problems(src, folder)
    tree = _tree_problems(src, files, folder)
    if not tree and not archives:
        return folder
    created = _missing_folders(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        for remote in src.remotes:
            if remote.filename in files or remote.filename in archives or not (folder / remote.filename).is_file():
                download_file(remote, folder, progress)
        if src.unpack is not None and src.unpacked is not None and tree:
            _unpack(folder / src.unpack, folder, src.unpacked)
    except BaseException:  # an interrupt too: what it created and left empty goes
        _remove_empty(src, folder, created)
        raise
    problems = check(name, folder)
    if problems:
        raise DownloadError(f"{name}: downloaded, but the files do not check out: " + "; ".join(problems))
    return folder
