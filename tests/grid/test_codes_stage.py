"""The codes stage without Ray: its file counts as done only once committed and intact, so a
kill between the write and the commit (or later damage) has the stage redo it.

Runtime: ~1 s (PGD-2 on 20 digits examples, twice, on the shared conftest model).
"""

from __future__ import annotations

from pathlib import Path

from grid.codes import codes_done, load_codes, run_codes_stage
from grid.manifest import COMMITS_DIR
from grid.spec import GridSpec
from grid.store import ResultStore

SPEC = {
    "experiment": "codes",
    "datasets": ["digits"],
    "methods": ["none"],
    "epochs": 1,
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 20,
    "eval_batch_size": 10,
    "codes": {"steps": 2},
}


def test_a_codes_file_without_its_commit_is_redone(digits, undefended_digits_model, tmp_path):
    trial = GridSpec.from_dict(SPEC).expand()[0]
    root = tmp_path / "results"
    store = ResultStore(str(root))
    assert not codes_done(store, trial)
    rows = run_codes_stage(store, trial, undefended_digits_model, digits, trial.codes, "abc")
    assert rows == 2 * SPEC["eval_n"]  # natural and adversarial code per example
    assert codes_done(store, trial)
    assert run_codes_stage(store, trial, undefended_digits_model, digits, trial.codes, "abc") == 0

    # The file stays, its commit is gone: what a kill between the two writes leaves behind.
    (root / COMMITS_DIR / f"{trial.trial_id}.json").unlink()
    assert any(Path(p).name.startswith(trial.trial_id) for p in map(str, root.rglob("*.parquet")))
    assert not codes_done(store, trial)
    assert run_codes_stage(store, trial, undefended_digits_model, digits, trial.codes, "abc") == rows
    assert codes_done(store, trial) and len(load_codes(root)) == rows
