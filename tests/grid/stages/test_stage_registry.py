"""The one registry of post-training stages (``grid.stages.STAGES``) and its three consumers.

- Every entry is complete: one module per stage, a unique name, its own ``wants``, ``files``
  and ``run``; the order is the pipeline's (evaluation first, the derived sanity flags last).
- ``run_stages`` (the trainable and the repair) runs every stage a trial wants, in order, and
  redoes a derived stage when an earlier one wrote something.
- ``er-grid status`` says DONE only when every file of every wanted stage is committed and
  intact: with any one stage's files missing, the trial is not DONE (parametrized over the
  registry, so a stage added later is covered without editing this test).
- ``repair_trial`` (what ``er-grid resume`` runs for a finished trial) from a real checkpoint
  writes every stage's files, and after one file is lost rewrites exactly that stage and the
  flags derived from it.

Runtime: ~5 s (a 1-epoch digits model, FGSM on 20 examples, PGD-2 codes).
"""

from __future__ import annotations

import importlib
import json
import pkgutil
from pathlib import Path

import pyarrow as pa
import pytest

import grid.stages
from grid.experiment import record_spec, status
from grid.experiment.files import EPOCH_FILE
from grid.spec import GridSpec
from grid.stages import STAGES, Stage, TrialBundle, run_stages
from grid.stages.base import SingleFileStage
from grid.store import ResultStore, load, load_codes, load_flags, load_trials
from grid.store.manifest import COMMITS_DIR

SPEC = {
    "experiment": "stages",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "batch_size": 64,
    "hyperparams": {"none": {"dropout": 0.5}},  # KD scores with MC dropout
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 20,
    "eval_batch_size": 10,
    "codes": {"steps": 2},
    "detection": {"digits": {"detectors": ["kd"], "attacks": [{"attack": "fgsm", "eps": 0.3}], "n": 60}},
}
OPTIONAL = {"detection", "codes"}  # the stages a spec may leave out


def trial_of(spec: dict):
    return GridSpec.from_dict(spec).expand()[0]


def test_every_stage_is_one_module_with_a_complete_entry():
    names = [s.name for s in STAGES]
    assert len(set(names)) == len(names) and all(names)
    modules = {m.name for m in pkgutil.iter_modules(grid.stages.__path__)} - {"base"}
    assert set(names) == modules, "one module per stage, each with its line in STAGES"
    for stage in STAGES:
        module = importlib.import_module(f"grid.stages.{stage.name}")
        assert module.STAGE is stage and module.__doc__
        kind = type(stage)
        required = ("wants", "path", "compute") if isinstance(stage, SingleFileStage) else ("wants", "files", "run")
        for method in required:  # every hook the contract leaves open is the stage's own
            assert getattr(kind, method) is not getattr(SingleFileStage if method in ("path", "compute") else Stage,
                                                        method), f"{stage.name}.{method}"
    assert names[0] == "evaluation" and names[-1] == "sanity"
    assert names.index("trial_row") < names.index("sanity")
    for stage in STAGES:  # a stage is derived only from stages that run before it
        assert set(stage.derived_from) <= set(names[:names.index(stage.name)]), stage.name
    assert dict((s.name, s.derived_from) for s in STAGES)["sanity"] == ("evaluation", "trial_row")


def test_run_stages_runs_every_wanted_stage_in_order(monkeypatch):
    calls = []
    writes = {"evaluation": 0, "trial_row": 0}

    def fake(stage):
        def run(bundle, redo=False):
            calls.append((stage.name, redo))
            return writes.get(stage.name, 1)
        return run

    for stage in STAGES:
        monkeypatch.setattr(stage, "run", fake(stage))
    full = TrialBundle(trial=trial_of(SPEC), store=None, method=None, data=None, checkpoint_hash="x",
                       device="cpu", state=None)
    written = run_stages(full)
    assert [name for name, _ in calls] == [s.name for s in STAGES]
    assert list(written) == [s.name for s in STAGES]
    # detection and codes wrote a file, but the flags come from the rows and the trial row.
    assert dict(calls)["sanity"] is False
    calls.clear()
    writes["trial_row"] = 1
    run_stages(full)
    assert dict(calls)["sanity"] is True  # the trial row was rewritten: its flags are redone

    calls.clear()
    writes.update({s.name: 0 for s in STAGES})
    bare = TrialBundle(trial=trial_of({k: v for k, v in SPEC.items() if k not in OPTIONAL}), store=None,
                       method=None, data=None, checkpoint_hash="x", device="cpu", state=None)
    run_stages(bare)
    assert [name for name, _ in calls] == [s.name for s in STAGES if s.name not in OPTIONAL]
    assert dict(calls)["sanity"] is False  # nothing written before it: its file is trusted if intact


def commit_placeholder(store: ResultStore, path: str, trial, key_extra: dict) -> None:
    """Commit a one-column parquet file at ``path`` (status checks commits, not contents)."""
    table = pa.table({"x": [1]})
    key = {"experiment": trial.experiment, "dataset": trial.dataset, "method": trial.method,
           "trial_id": trial.trial_id, **key_extra}
    store.commit_table(store.relative(path).split("/", 1)[0], table, path, key)


def experiment_with(tmp_path: Path, trial, left_out: str):
    """An experiment folder whose trial is trained (a checkpoint sidecar at its last epoch) and
    whose store has every wanted stage's files committed except ``left_out``'s."""
    spec = GridSpec.from_dict(SPEC)
    experiment = tmp_path / "stages"
    record_spec(spec, str(experiment))
    sidecar = experiment / trial.name / "checkpoint_000000" / EPOCH_FILE
    sidecar.parent.mkdir(parents=True)
    sidecar.write_text(json.dumps({"epoch": trial.epochs, "train_seconds": 1.0}))
    store = ResultStore(str(experiment / "results"))
    for stage in STAGES:
        if stage.name == left_out or not stage.wants(trial):
            continue
        for path in stage.files(store, trial):
            extra = {}
            if stage.name == "evaluation":  # the batch key status counts batches by
                attack, eps, b = path.rsplit("/", 1)[1].removesuffix(".parquet").split("__")[1:]
                extra = {"attack": attack, "eps": float(eps[3:]), "batch": int(b[1:])}
            commit_placeholder(store, path, trial, extra)
    return experiment


@pytest.mark.parametrize("left_out", [None, *(s.name for s in STAGES)])
def test_status_is_done_only_with_every_stage_committed(tmp_path, left_out):
    trial = trial_of(SPEC)
    assert all(stage.wants(trial) for stage in STAGES)  # the spec asks for every stage
    report = status(str(experiment_with(tmp_path, trial, left_out)))
    (row,) = report.trials
    assert row.trial_id == trial.trial_id and not row.damaged
    if left_out is None:
        assert row.state == "DONE"
    else:
        assert row.state == "EVALUATING", f"status says {row.state} without the {left_out} stage's files"


def test_repair_trial_writes_every_stage_then_only_what_is_lost(tmp_path, digits):
    import er_core.methods
    import er_core.train
    from grid.trial import TrainState, repair_trial, save_state

    trial = trial_of(SPEC)
    experiment = tmp_path / "stages"
    record_spec(GridSpec.from_dict(SPEC), str(experiment))
    method = er_core.methods.make(trial.method, trial.dataset, **trial.method_hyperparams())
    history = er_core.train.fit(method, digits, epochs=trial.epochs, batch_size=trial.batch_size, seed=trial.seed)
    folder = experiment / trial.name / "checkpoint_000000"
    folder.mkdir(parents=True)
    save_state(method, TrainState(epoch=trial.epochs, losses=[{"loss": history[-1]["loss"]}], train_seconds=1.0),
               folder)
    results = str(experiment / "results")

    written = repair_trial(trial.to_dict(), str(experiment / trial.name), results)
    assert written == {"evaluation": 2, "detection": 1, "codes": 1, "trial_row": 1, "sanity": 1}
    assert status(str(experiment)).trials[0].state == "DONE"
    rows, codes, flags = load(results), load_codes(results), load_flags(results)
    assert len(rows) == SPEC["eval_n"] and len(codes) == 2 * SPEC["eval_n"] and len(load_trials(results)) == 1

    # A codes file lost without a trace (file and commit entry gone): not DONE, and the repair
    # recomputes that stage alone (the flags come from the rows and the trial row, both intact).
    manifest = Path(results) / COMMITS_DIR / f"{trial.trial_id}.json"
    record = json.loads(manifest.read_text())
    codes_file = next(p for p in record["files"] if p.startswith("codes/"))
    del record["files"][codes_file]
    manifest.write_text(json.dumps(record))
    (Path(results) / codes_file).unlink()
    assert status(str(experiment)).trials[0].state == "EVALUATING"
    again = repair_trial(trial.to_dict(), str(experiment / trial.name), results)
    assert again == {"evaluation": 0, "detection": 0, "codes": 1, "trial_row": 0, "sanity": 0}
    assert status(str(experiment)).trials[0].state == "DONE"
    assert load_codes(results).drop(columns="created_at").equals(codes.drop(columns="created_at"))
    assert load(results).equals(rows) and load_flags(results).equals(flags)
