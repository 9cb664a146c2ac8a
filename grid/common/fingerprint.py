"""What produced a result: canonical hashing of configs, code and library versions.

Every result row carries these so that rows from a changed spec, code or checkpoint are
never mixed silently with old ones.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import os
import re
import subprocess
from importlib import metadata
from pathlib import Path

# Libraries whose version can change an attack's outcome or a trained model.
TRACKED_LIBRARIES = ("torch", "torchvision", "numpy", "scikit-learn", "pyautoattack", "ray")


def _canonical(value, where: str = "config"):
    """Plain JSON-able form with one spelling per value.

    Integral floats become ints (``1.0`` and ``1`` are the same λ), tuples become lists,
    dict keys become strings (sorted on dump). NaN/inf have no canonical JSON, so they raise.
    """
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"{where}: non-finite number {value!r} cannot be hashed")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): _canonical(v, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise ValueError(f"{where}: value {value!r} of type {type(value).__name__} is not JSON-able")


def canonical_json(value) -> str:
    """Deterministic JSON: sorted keys, no whitespace, floats as Python's shortest repr.

    Python's float repr is the shortest string that round-trips, so it is the same on every
    machine and Python version (≥ 3.1); that makes hashes of configs stable across hosts.
    """
    return json.dumps(_canonical(value), sort_keys=True, separators=(",", ":"), allow_nan=False)


def short_hash(value, length: int = 10) -> str:
    """First ``length`` hex digits of sha256 over :func:`canonical_json` of ``value``."""
    return hashlib.sha256(canonical_json(value).encode("utf-8")).hexdigest()[:length]


def eval_subset_tag(n: int, seed: int) -> str:
    """The evaluation subset as stored in result rows: ``"n=1000,seed=0"``."""
    return f"n={int(n)},seed={int(seed)}"


@functools.lru_cache(maxsize=1)
def library_versions() -> str:
    """JSON object of the installed versions of :data:`TRACKED_LIBRARIES` (missing → null)."""
    versions = {}
    for name in TRACKED_LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return json.dumps(versions, sort_keys=True, separators=(",", ":"))


#: The code version a driver resolved, travelling to its trials. ``er-grid submit`` puts it in the
#: job's runtime env (Ray hands a job's ``env_vars`` to its driver and every worker), and a driver
#: exports it before it starts Ray (:func:`export_code_version`), because the working directory
#: ``ray job submit`` uploads has no ``.git``: without it those rows recorded the bare package version.
CODE_VERSION_ENV = "ER_GRID_CODE_VERSION"
_VERSION_TEXT = re.compile(r"[0-9A-Za-z][0-9A-Za-z.+_-]*")


@functools.lru_cache(maxsize=1)
def er_grid_code_version() -> str:
    """``<package version>[+g<git short hash>[.dirty]]``, computed once per process.

    The value of ``$ER_GRID_CODE_VERSION`` when set (the driver's or the submitter's, see
    :data:`CODE_VERSION_ENV`), else :func:`checkout_code_version` of this source tree.
    """
    travelled = os.environ.get(CODE_VERSION_ENV, "").strip()
    if travelled:
        if not _VERSION_TEXT.fullmatch(travelled):
            raise ValueError(f"{CODE_VERSION_ENV}={travelled!r}: expected a version such as 0.1.0+g2f7b7f5 "
                             "(letters, digits, '.', '+', '_', '-'); unset it to read the source tree's")
        return travelled
    return checkout_code_version(Path(__file__).resolve().parents[2])  # grid/common/fingerprint.py → checkout


def export_code_version() -> str:
    """Resolve the code version here and put it in this process's environment (unless already
    set), so the processes started from here (a local Ray's raylet and its workers inherit the
    environment) record the same version as the driver, wherever their copy of the code lies."""
    version = er_grid_code_version()
    os.environ.setdefault(CODE_VERSION_ENV, version)
    return version


def checkout_code_version(repo: Path) -> str:
    """``<package version>[+g<git short hash>[.dirty]]`` of the source tree at ``repo``.

    The git part is present only where ``repo`` is the root of a git checkout (not a Ray
    working_dir upload, which excludes ``.git``, nor a tree that merely lies inside some other
    repository); "dirty" marks uncommitted changes to tracked files, since such rows cannot be
    reproduced from the hash alone.
    """
    try:
        version = metadata.version("er-grid")
    except metadata.PackageNotFoundError:
        version = "0+unknown"
    repo = Path(repo)
    if not (repo / ".git").exists():
        return version
    try:
        short = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=repo, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=repo,
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        # No git binary or not a repository after all: the package version still identifies it.
        return version
    if not short:
        return version
    return f"{version}+g{short}" + (".dirty" if dirty else "")
