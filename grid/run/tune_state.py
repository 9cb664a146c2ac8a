"""Ray Tune's own files in an experiment folder: checked before ``resume`` restores them, set
aside when a crash or a full disk cut them short, and Tune's trial list given again from
``grid_spec.json`` when its experiment state is lost.

Tune keeps, beside er-grid's records: ``tuner.pkl`` (how the Tuner was built), the
``experiment_state-<time>.json`` files (its trial list; the newest is restored), its searcher's
``basic-variant-state-<time>.json`` (a pickle despite the name) and, per trial folder,
``params.json``/``params.pkl``, ``result.json`` and an errored trial's ``error.pkl``. The driver
writes them while the trials run, so a disk that fills leaves them cut short, and Tune fails
only when it reads them back (``EOFError: Ran out of input`` from an empty ``error.pkl``).

Each is checked without unpickling anything: JSON parses whole (``result.json`` line by line),
a pickle walks whole to its STOP opcode (``pickletools.genops``, which executes nothing). A
damaged file is moved to ``<experiment>/_tune_state_set_aside/<UTC time>/<its path>``, never
deleted, and named on stderr. Without a whole experiment state Tune restarts the experiment
from the trials it is given (:func:`recorded_param_space`: the spec of ``grid_spec.json``); each
trial then continues from the checkpoints in its folder and skips every committed result (the
store is the source of truth), so a finished trial is only checked again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import fnmatch
import json
import logging
import pickletools
import sys
from typing import Iterator, Optional

import pyarrow.fs as pafs

from grid.common.bounded_json import bounded_json, read_at_most
from grid.common.errors import GridError
from grid.common.locations import RESULTS_DIR, filesystem, results_location
from grid.experiment.spec_record import read_record
from grid.spec import GridSpec

#: Where damaged Tune files go, inside the experiment folder.
SET_ASIDE_DIR = "_tune_state_set_aside"
EXPERIMENT_STATE = "experiment_state-*.json"
# Tune's experiment state holds a few KB per trial; a grid has at most 10,000 trials.
MAX_TUNE_STATE_BYTES = 256 << 20
# The spec a trial list is rebuilt from needs a storage to validate; it is not part of any trial
# (shared storage, so a multi-node spec validates too).
REBUILD_STORAGE = "s3://rebuilt-trial-list/unused"
# Tune's log records of a restore that finds no experiment state, expected once it was set aside.
RESTART_RECORDS = ("Failed to restore the run state", "Tried to resume experiment from directory")


@dataclasses.dataclass(frozen=True)
class Recovery:
    """What :func:`recover_tune_state` did: (file, where it went, why) per file set aside, and
    whether Tune's trial list went with them (no whole experiment state left)."""

    set_aside: tuple = ()
    trial_list_lost: bool = False


def tune_param_space(trials, results: Optional[str]) -> dict:
    """Tune's ``param_space`` for ``trials`` (``TrialConfig``s): a grid over their dicts, and the
    results URI for an object store (None: found from the trial's storage context)."""
    return {"trial": {"grid_search": [t.to_dict() for t in trials]}, "results": results}


def damage(data: bytes, kind: str) -> Optional[str]:
    """Why ``data`` (a Tune file of ``kind`` "json" or "pickle") is not whole, or None."""
    if len(data) > MAX_TUNE_STATE_BYTES:
        return f"over {MAX_TUNE_STATE_BYTES:,} bytes"
    if not data.strip():
        return "empty"
    try:
        if kind == "pickle":
            for _ in pickletools.genops(data):  # reads opcodes, runs none
                pass
        else:
            json.loads(data)
    except (ValueError, RecursionError) as err:
        return f"cut short: {str(err).splitlines()[0] if str(err) else type(err).__name__}"
    return None


def tune_files(fs, folder: str) -> Iterator[tuple[str, str]]:
    """(path, "json" | "pickle") of the Tune files of the experiment ``folder`` that a restore or
    its results read back: the experiment-level ones and the trial folders' pickles (an errored
    trial's ``error.pkl``, ``params.pkl``); a trial's logs (``result.json``, ``progress.csv``) are
    read by Tune only where a failure is a warning."""
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        name = info.base_name
        if info.type == pafs.FileType.File:
            if fnmatch.fnmatch(name, EXPERIMENT_STATE):
                yield info.path, "json"
            elif fnmatch.fnmatch(name, "*state-*.json") or name.endswith(".pkl"):  # tuner.pkl, searchers' state
                yield info.path, "pickle"
        elif info.type == pafs.FileType.Directory and name != RESULTS_DIR and not name.startswith(("_", ".")):
            for inner in fs.get_file_info(pafs.FileSelector(info.path)):
                if inner.type == pafs.FileType.File and inner.base_name.endswith(".pkl"):
                    yield inner.path, "pickle"


def trial_params(fs, folder: str) -> Iterator[str]:
    """The ``params.json`` of every trial folder of the experiment ``folder``."""
    for info in fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True)):
        if info.type == pafs.FileType.Directory and info.base_name != RESULTS_DIR and not info.base_name.startswith(("_", ".")):
            params = f"{info.path}/params.json"
            if fs.get_file_info(params).type == pafs.FileType.File:
                yield params


def recover_tune_state(path: str) -> Recovery:
    """Set aside every Tune file of the experiment folder ``path`` that is not whole, naming each
    on stderr; a cut-short ``tuner.pkl`` (how the Tuner was built) cannot be done without and is
    one GridError after it is set aside."""
    fs, folder = filesystem(path)
    damaged = []
    for file, kind in tune_files(fs, folder):
        with fs.open_input_stream(file) as stream:
            reason = damage(read_at_most(stream, MAX_TUNE_STATE_BYTES), kind)
        if reason is not None:
            damaged.append((file, reason))
    if not damaged:
        return Recovery()
    stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%S.%fZ")
    moved = []
    for file, reason in damaged:
        target = f"{folder}/{SET_ASIDE_DIR}/{stamp}/{file[len(folder) + 1:]}"
        fs.create_dir(target.rpartition("/")[0], recursive=True)
        fs.move(file, target)  # an object store copies, then deletes
        moved.append((file, target, reason))
        print(f"er-grid: note: Ray Tune's {file} is damaged ({reason}); set aside as {target}", file=sys.stderr)
    if any(file.endswith("/tuner.pkl") for file, _ in damaged):
        raise GridError(f"{folder}/tuner.pkl, how Ray Tune's run was built, is damaged and set aside in "
                        f"{folder}/{SET_ASIDE_DIR}/{stamp}; run the spec again with `er-grid run SPEC --storage "
                        "<storage>`: its trials continue from their checkpoints and committed results")
    left = fs.get_file_info(pafs.FileSelector(folder, allow_not_found=True))
    return Recovery(set_aside=tuple(moved),
                    trial_list_lost=not any(fnmatch.fnmatch(i.base_name, EXPERIMENT_STATE) for i in left))


def recorded_param_space(path: str) -> dict:
    """Tune's ``param_space`` for the experiment folder ``path``, from its ``grid_spec.json``:
    the same trials (checked by their ids) with the spec's resources, and the data root its
    trials ran with (read from their ``params.json``; the default one where no trial had
    started)."""
    record = read_record(path)
    spec = GridSpec.from_dict(dict(record["spec"], storage_path=REBUILD_STORAGE, data_root=recorded_data_root(path)))
    trials = spec.expand()
    if {t.trial_id for t in trials} != set(record["trials"]):
        raise GridError(f"{path}: the spec of grid_spec.json no longer expands to its recorded trials "
                        "(a method plugin or a models: file changed); Ray Tune's trial list cannot be rebuilt")
    return tune_param_space(trials, results_location(path) if "://" in path else None)


def recorded_data_root(path: str) -> Optional[str]:
    """The ``data_root`` of the trials that started in the experiment folder ``path`` (from
    Tune's ``params.json`` of each; whole ones only), None where none started."""
    fs, folder = filesystem(path)
    roots = set()
    for file in trial_params(fs, folder):
        with fs.open_input_stream(file) as stream:
            try:
                roots.add(bounded_json(read_at_most(stream, MAX_TUNE_STATE_BYTES), file, MAX_TUNE_STATE_BYTES)
                          ["trial"]["data_root"])
            except (GridError, KeyError, TypeError):
                continue
    if len(roots) > 1:
        raise GridError(f"{path}: its trials ran with different data roots ({sorted(map(str, roots))}); "
                        "Ray Tune's trial list cannot be rebuilt")
    return next(iter(roots), None)


class DropRecords(logging.Filter):
    """Drops the log records that start with one of ``prefixes``."""

    def __init__(self, prefixes: tuple):
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefixes)


@contextlib.contextmanager
def restart_expected(expected: bool) -> Iterator[None]:
    """While Tune restores an experiment whose state was set aside (``expected``), its report
    that none was found (an error with a traceback) is left out: the set-aside was named."""
    if not expected:
        yield
        return
    logger = logging.getLogger("ray.tune.execution.tune_controller")
    quiet = DropRecords(RESTART_RECORDS)
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


__all__ = ["Recovery", "SET_ASIDE_DIR", "damage", "recorded_data_root", "recorded_param_space", "recover_tune_state",
           "restart_expected", "tune_param_space"]
