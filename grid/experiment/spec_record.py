"""``grid_spec.json``, the record of which spec an experiment folder holds: written by ``er-grid
run``, and read here only (the one reader of it: ``status``, ``load_model``, ``resume`` and a
second ``run`` all come through this module).

It holds the spec without where it runs (storage, data root) and one canonical config per
trial id, so that running a changed spec into an existing experiment stops instead of mixing
two grids in one folder. Plain JSON: nothing in it is unpickled.

The record is cross-checked before it is believed (it decides which trials ``status`` shows
and which ``run`` considers finished): it carries the sha256 of its own canonical JSON
(:data:`HASH_FIELD`), and where its spec can be re-expanded without importing anything from
outside er-grid (built-in methods, no ``models:`` weights files) the expansion must give exactly
the recorded trials. Either failing makes the record damaged, one line naming the file. A
record without the hash (written before records carried one) is refused the same way: it cannot
be told apart from an edited one.
"""

from __future__ import annotations

import hashlib
import json

import pyarrow.fs as pafs

from grid.common.bounded_json import bounded_json, read_at_most
from grid.common.errors import GridError
from grid.common.fingerprint import canonical_json
from grid.common.locations import filesystem, folder_candidates, storage_location
from grid.spec import DEFAULT_RESOURCES, GridSpec, TrialConfig
from grid.store import ResultStore

from .files import SPEC_FILE

# What a trial's record leaves out: where it runs, which is not part of what it computes.
NOT_RECORDED = ("resources", "data_root")
# A record holds ~3 KB per trial and a spec has at most grid.spec.MAX_TRIALS (10,000) trials.
MAX_RECORD_BYTES = 64 << 20
MAX_TRIAL_RECORD_BYTES = 1 << 20
# The record's hash of itself: sha256 of the canonical JSON of every other field.
HASH_FIELD = "sha256"
# Where the spec is re-expanded: storage is not part of any trial (NOT_RECORDED), but a spec
# with num_nodes > 1 must name shared storage to validate.
REDERIVE_STORAGE = "s3://re-derived-spec/unused"


def trial_records(spec: GridSpec) -> dict:
    """trial_id → the trial's config without where it runs (resources, data root), as
    canonical JSON: also catches changes outside trial_id (e.g. an added detection stage,
    which finished trials would otherwise never run)."""
    return {t.trial_id: canonical_json({k: v for k, v in t.to_dict().items() if k not in NOT_RECORDED})
            for t in spec.expand()}


def record_spec(spec: GridSpec, path: str) -> None:
    """Write ``grid_spec.json`` (spec and trial ids; no paths of ours) into the experiment folder."""
    fs, base = filesystem(path)
    fs.create_dir(base, recursive=True)
    payload = {"experiment": spec.experiment, "trials": trial_records(spec),
               "spec": {k: v for k, v in spec.to_dict().items() if k not in ("storage_path", "data_root")}}
    payload[HASH_FIELD] = record_digest(payload)
    # Atomic (temp + rename, or one PUT): a full disk never leaves half a spec record.
    ResultStore(base, filesystem=fs).put_atomic(f"{base}/{SPEC_FILE}", json.dumps(payload, indent=1, sort_keys=True).encode())


def read_record(path: str) -> dict:
    """The parsed ``grid_spec.json`` of the experiment folder ``path``; GridError naming the
    file when it is missing, not JSON, or not a record of this version of er-grid."""
    fs, base = filesystem(path)
    where = f"{path.partition('?')[0]}/{SPEC_FILE}"
    if fs.get_file_info(f"{base}/{SPEC_FILE}").type != pafs.FileType.File:
        raise GridError(f"{path} is not an experiment folder made by `er-grid run` (no {SPEC_FILE})")
    with fs.open_input_stream(f"{base}/{SPEC_FILE}") as stream:
        text = read_at_most(stream, MAX_RECORD_BYTES)
    record = bounded_json(text, where, MAX_RECORD_BYTES)  # DamagedRecord, a GridError, naming the file
    if not isinstance(record, dict) or not isinstance(record.get("trials"), dict):
        raise GridError(f"{where} is not a spec record written by this version of er-grid")
    check_record(record, where)
    return record


def record_digest(record: dict) -> str:
    """sha256 of the canonical JSON of ``record`` without its :data:`HASH_FIELD`."""
    rest = {k: v for k, v in record.items() if k != HASH_FIELD}
    return hashlib.sha256(canonical_json(rest).encode("utf-8")).hexdigest()


def check_record(record: dict, where: str) -> None:
    """GridError naming ``where`` unless the record's hash matches its content and, where its
    spec can be re-expanded, the expansion gives exactly its trials."""
    if HASH_FIELD not in record:
        raise GridError(f"{where} is damaged (no {HASH_FIELD} of itself: not written by this version of er-grid)")
    try:
        digest = record_digest(record)
    except (TypeError, ValueError) as err:  # canonical_json refuses NaN and non-JSON values
        raise GridError(f"{where} is damaged ({err})") from err
    if record[HASH_FIELD] != digest:
        raise GridError(f"{where} is damaged (its content does not match its {HASH_FIELD}: edited after it was written)")
    rederived = rederived_trials(record, where)
    if rederived is not None and rederived != record["trials"]:
        extra = sorted(set(record["trials"]) - set(rederived))
        missing = sorted(set(rederived) - set(record["trials"]))
        raise GridError(f"{where} is damaged (its spec expands to other trials: {len(missing)} not recorded, "
                        f"{len(extra)} recorded that it does not plan, "
                        f"{sum(1 for t in rederived if t in record['trials'] and record['trials'][t] != rederived[t])} "
                        "with other configs; edited, or written by another version of er-grid)")


def rederived_trials(record: dict, where: str) -> dict | None:
    """:func:`trial_records` of the record's own spec, expanded again; None where expanding it
    would import code from outside er-grid (a plugin method) or read a ``models:`` weights file,
    and where torch is not importable (``status`` and ``query`` run without it; expanding a spec
    resolves method defaults, which needs torch): those trials are checked one by one against
    their ids (:func:`recorded_trial`) instead, after the record's own hash."""
    try:
        from er_core import methods
    except ImportError:
        return None

    fields = record.get("spec")
    if not isinstance(fields, dict):
        raise GridError(f"{where} is damaged (no spec)")
    names = fields.get("methods")
    if fields.get("models") or not isinstance(names, list) or not all(
            isinstance(m, str) and methods.is_builtin(m) for m in names):
        return None
    try:
        spec = GridSpec.from_dict(dict(fields, storage_path=REDERIVE_STORAGE, data_root=None))
    except (ValueError, TypeError, KeyError) as err:
        raise GridError(f"{where} is damaged (its spec is not valid: {str(err).splitlines()[0] if str(err) else err})") from err
    return trial_records(spec)


def check_recorded_spec(spec: GridSpec, path: str) -> bool:
    """True if ``path`` holds a run of this very spec (same trials, same trial configs apart
    from resources and data root); False if it holds nothing yet.

    Raises :class:`GridError` when it holds another spec's run (or a folder not made by
    ``er-grid run``)."""
    fs, base = filesystem(path)
    if fs.get_file_info(base).type == pafs.FileType.NotFound:
        return False
    if fs.get_file_info(f"{base}/{SPEC_FILE}").type == pafs.FileType.NotFound:
        if fs.get_file_info(pafs.FileSelector(base)):
            raise GridError(f"{path} exists and was not made by `er-grid run` (no {SPEC_FILE}); "
                            "choose another experiment name or storage")
        return False
    recorded = read_record(path)
    now = trial_records(spec)
    if recorded["trials"] != now:
        added = [t for t in now if recorded["trials"].get(t) != now[t]]
        removed = [t for t in recorded["trials"] if t not in now]
        raise GridError(
            f"experiment {spec.experiment!r} at {path} was run with a different spec "
            f"({len(added)} trial(s) new or changed, {len(removed)} no longer in the spec); results of "
            "two specs are never mixed in one experiment: give the changed spec a new experiment "
            "name, or `er-grid resume` the existing one"
        )
    return True


def experiment_folder(path: str) -> str:
    """The experiment folder a user means: ``path`` itself, or the parent of a ``results``
    folder (the convention of every reader); GridError if neither holds a spec record."""
    path = storage_location(path)
    experiment, _results = folder_candidates(path)
    for candidate in dict.fromkeys((path, experiment)):
        fs, folder = filesystem(candidate)
        if fs.get_file_info(f"{folder}/{SPEC_FILE}").type == pafs.FileType.File:
            return candidate
    raise GridError(f"{path} is not an experiment folder (no {SPEC_FILE}); give the folder "
                    "<storage>/<experiment> that `er-grid run` printed, or its results/ folder")


def recorded_trial(record: dict, trial_id: str) -> TrialConfig:
    """One trial of a spec record, with default resources and no data root (where it ran is
    not recorded); ValueError when the record's config does not hash to its id."""
    values = dict(bounded_json(record["trials"][trial_id], f"trial {trial_id}'s record", MAX_TRIAL_RECORD_BYTES),
                  resources=dict(DEFAULT_RESOURCES), data_root=None)
    trial = TrialConfig.from_dict(values)
    if trial.trial_id != trial_id:
        raise ValueError(f"trial {trial_id} hashes to {trial.trial_id}")
    return trial


def planned_trials(experiment: str) -> list[TrialConfig]:
    """The trials of ``grid_spec.json``; a damaged record is a GridError naming the file."""
    record = read_record(experiment)
    where = f"{experiment.partition('?')[0]}/{SPEC_FILE}"
    try:
        return [recorded_trial(record, trial_id) for trial_id in sorted(record["trials"])]
    except (ValueError, KeyError, TypeError, AttributeError) as err:
        raise GridError(f"{where} is damaged or not written by this version of er-grid ({err})") from err


__all__ = ["HASH_FIELD", "check_record", "check_recorded_spec", "experiment_folder", "planned_trials", "read_record",
           "record_digest", "record_spec", "recorded_trial", "trial_records"]
