"""Ray Tune's files cut short (by a full disk, as ``tests/grid/run/test_disk_full.py`` shows
Tune leaving them: an experiment state ending mid-string, an empty ``error.pkl`` and
``params.pkl``) are found without unpickling, named and set aside by ``resume``, never deleted;
the trial list Tune lost with its experiment state is given again from ``grid_spec.json``
(``grid.run.tune_state``). The whole resume on real Ray is in
``tests/grid/scenarios/test_disk_full_scenario.py``."""

from __future__ import annotations

import json
import pickle

import pytest

from grid.common.errors import GridError
from grid.experiment import record_spec
from grid.run.tune_state import SET_ASIDE_DIR, damage, recorded_param_space, recover_tune_state, tune_param_space
from grid.spec import GridSpec

SPEC = {
    "experiment": "cut", "datasets": ["digits"], "methods": ["none", "madry"], "train_eps": {"digits": [0.1]}, "epochs": 1,
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 8,
    "resources": {"digits": {"cpu": 1, "gpu": 0}},
}


class Plant:
    """A pickle that would write a file if it were ever unpickled."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return open, (self.path, "w")


@pytest.fixture
def experiment(tmp_path):
    """An experiment folder as a full disk leaves it: grid_spec.json whole; Tune's experiment
    state cut mid-file, a trial's error.pkl and params.pkl empty, its params.json whole (with the
    spec's data root); tuner.pkl and the searcher's state whole (pickles that must not run)."""
    spec = GridSpec.from_dict(dict(SPEC, storage_path=str(tmp_path), data_root=str(tmp_path / "data")))
    folder = tmp_path / "cut"
    record_spec(spec, str(folder))
    state = json.dumps({"trial_data": [["{\"stub\": false}", "{}"]], "runner_data": {"x": "y" * 100}})
    (folder / "experiment_state-2026-12-08_02-04-25.json").write_text(state[: len(state) // 2])
    (folder / "tuner.pkl").write_bytes(pickle.dumps(Plant(str(tmp_path / "ran"))))
    (folder / "basic-variant-state-2026-12-08_02-04-25.json").write_bytes(pickle.dumps({"variants": [1, 2]}))
    trial = spec.expand()[0]
    (folder / trial.name).mkdir()
    (folder / trial.name / "error.pkl").write_bytes(b"")
    (folder / trial.name / "params.pkl").write_bytes(b"")
    (folder / trial.name / "params.json").write_text(json.dumps({"trial": trial.to_dict(), "results": None}))
    (folder / trial.name / "result.json").write_text('{"epoch": 1}\n{"epo')  # Tune's log: only warned about
    return spec, folder


def test_damage_reads_json_and_pickles_without_running_them(tmp_path):
    plant = pickle.dumps(Plant(str(tmp_path / "ran")))
    assert damage(plant, "pickle") is None
    assert damage(plant[:-1], "pickle").startswith("cut short")
    assert damage(b"", "pickle") == "empty" and damage(b"", "json") == "empty"
    assert damage(b'{"a": [1, 2', "json").startswith("cut short")
    assert damage(b'{"a": [1, 2]}', "json") is None
    assert not (tmp_path / "ran").exists()


def test_cut_short_tune_files_are_named_and_set_aside(experiment, tmp_path, capsys):
    spec, folder = experiment
    trial = spec.expand()[0].name
    untouched = {p: p.read_bytes() for p in [folder / "tuner.pkl", folder / "grid_spec.json",
                                             folder / trial / "params.json", folder / trial / "result.json"]}
    recovery = recover_tune_state(str(folder))

    damaged = {"experiment_state-2026-12-08_02-04-25.json", f"{trial}/error.pkl", f"{trial}/params.pkl"}
    assert {old[len(str(folder)) + 1:] for old, _new, _why in recovery.set_aside} == damaged
    assert recovery.trial_list_lost  # its only experiment state went
    notes = capsys.readouterr().err.strip().splitlines()
    assert len(notes) == 3 and all(n.startswith("er-grid: note: Ray Tune's ") for n in notes)
    for old, new, why in recovery.set_aside:
        assert not (folder / old[len(str(folder)) + 1:]).exists()
        assert new.startswith(f"{folder}/{SET_ASIDE_DIR}/") and new.endswith(old[len(str(folder)) + 1:])
        assert any(old in n and new in n and why in n for n in notes)
    (stamp,) = (folder / SET_ASIDE_DIR).iterdir()
    assert (stamp / "experiment_state-2026-12-08_02-04-25.json").read_text().startswith('{"trial_data"')
    assert {p: p.read_bytes() for p in untouched} == untouched
    assert not (tmp_path / "ran").exists(), "a pickle was run while it was checked"

    # Nothing damaged is left: a second look sets nothing aside.
    assert recover_tune_state(str(folder)).set_aside == ()


def test_a_whole_older_experiment_state_keeps_the_trial_list(experiment):
    _spec, folder = experiment
    (folder / "experiment_state-2026-12-01_00-00-00.json").write_text(json.dumps({"trial_data": []}))
    recovery = recover_tune_state(str(folder))
    assert len(recovery.set_aside) == 3 and not recovery.trial_list_lost


def test_the_lost_trial_list_is_given_again_from_the_spec_record(experiment, tmp_path):
    spec, folder = experiment
    recover_tune_state(str(folder))
    space = recorded_param_space(str(folder))
    # The trials as `er-grid run` gave them to Tune, the data root they ran with included (it is
    # not in grid_spec.json: it says where the data is, not what a trial computes).
    assert space == tune_param_space(spec.expand(), None)
    assert {t["data_root"] for t in space["trial"]["grid_search"]} == {str(tmp_path / "data")}
    # An object-store experiment gets its results URI, query arguments kept.
    assert tune_param_space(spec.expand(), "s3://b/e/results?x=1")["results"] == "s3://b/e/results?x=1"


def test_a_cut_short_tuner_pickle_is_set_aside_and_one_line(experiment):
    _spec, folder = experiment
    (folder / "tuner.pkl").write_bytes((folder / "tuner.pkl").read_bytes()[:10])
    with pytest.raises(GridError, match=r"tuner\.pkl.*set aside.*er-grid run SPEC"):
        recover_tune_state(str(folder))
    assert not (folder / "tuner.pkl").exists()
    assert list((folder / SET_ASIDE_DIR).glob("*/tuner.pkl"))
