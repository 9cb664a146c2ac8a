"""``grid_spec.json`` is cross-checked before it is believed: its sha256 of itself, and its
spec re-expanded must give exactly its trials. An edited record is damaged (one line naming the
file) for ``status``, ``run`` (through ``check_recorded_spec``) and the CLI; never a list of
PENDING trials the store does not hold, never "finished". Real records written by
``record_spec``; no Ray. Runtime: ~3 s."""

from __future__ import annotations

import json

import pytest

from grid.cli import main
from grid.common.errors import GridError
from grid.experiment import SPEC_FILE, check_recorded_spec, planned_trials, record_spec, status
from grid.experiment.spec_record import HASH_FIELD, record_digest
from grid.spec import GridSpec

SPEC = {
    "experiment": "hashed", "datasets": ["digits"], "methods": ["none", "madry"], "seeds": [0, 1], "epochs": 2,
    "train_eps": {"digits": [0.1]}, "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 20,
}


@pytest.fixture
def recorded(tmp_path):
    spec = GridSpec.from_dict(dict(SPEC, storage_path=str(tmp_path)))
    folder = tmp_path / "hashed"
    record_spec(spec, str(folder))
    return spec, folder


def edit(folder, change, rehash: bool = False) -> None:
    """Change the record as a person with write access could, optionally recomputing its hash."""
    path = folder / SPEC_FILE
    record = json.loads(path.read_text())
    change(record)
    if rehash:
        record[HASH_FIELD] = record_digest(record)
    path.write_text(json.dumps(record, indent=1))


def test_a_written_record_carries_its_hash_and_is_believed(recorded):
    spec, folder = recorded
    record = json.loads((folder / SPEC_FILE).read_text())
    assert record[HASH_FIELD] == record_digest(record) and len(record[HASH_FIELD]) == 64
    assert sorted(t.trial_id for t in planned_trials(str(folder))) == sorted(t.trial_id for t in spec.expand())
    assert check_recorded_spec(spec, str(folder)) is True


def test_an_edited_record_is_damaged_for_status_run_and_the_cli(recorded, capsys):
    spec, folder = recorded
    # The case: the spec inside the record changed to other seeds, so that status
    # would list the edited spec's trials and run would find them "finished".
    edit(folder, lambda r: r["spec"].update(seeds=[7]))
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(its content does not match its sha256"):
        status(str(folder))
    edited = GridSpec.from_dict(dict(SPEC, seeds=[7], storage_path=str(folder.parent)))
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged"):
        check_recorded_spec(edited, str(folder))
    assert main(["status", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("er-grid: error:") and f"{folder}/{SPEC_FILE} is damaged" in err


def test_a_rehashed_record_whose_trials_its_spec_does_not_plan_is_damaged(recorded):
    spec, folder = recorded
    first = spec.expand()[0].trial_id
    # Hash recomputed (it is no secret): the re-expanded spec still gives the original trials.
    edit(folder, lambda r: r["trials"].pop(first), rehash=True)
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(its spec expands to other trials: 1 not recorded, "
                                        r"0 recorded that it does not plan, 0 with other configs"):
        planned_trials(str(folder))


def test_a_rehashed_spec_without_matching_trials_is_damaged(recorded):
    _spec, folder = recorded
    edit(folder, lambda r: r["spec"].update(seeds=[0]), rehash=True)
    with pytest.raises(GridError, match=r"0 not recorded, 2 recorded that it does not plan"):
        status(str(folder))


def test_a_record_without_its_hash_is_refused(recorded):
    # Records written before they carried a hash: none outside test fixtures, and one cannot be
    # told apart from an edited record, so it is refused with the reason.
    _spec, folder = recorded
    edit(folder, lambda r: r.pop(HASH_FIELD))
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(no sha256 of itself"):
        planned_trials(str(folder))


def test_a_record_whose_spec_no_longer_validates_is_damaged(recorded):
    _spec, folder = recorded
    edit(folder, lambda r: r["spec"].update(epochs=-3), rehash=True)
    with pytest.raises(GridError, match=rf"{SPEC_FILE} is damaged \(its spec is not valid: spec.epochs"):
        planned_trials(str(folder))
