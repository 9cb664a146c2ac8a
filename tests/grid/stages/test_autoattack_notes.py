"""What AutoAttack's own checks say reaches the store and the flags: each AutoAttack batch keeps
a notes file (a ``recorded`` row, then its warnings) written before the batch; a model that
pyautoattack calls randomized while it claims to be deterministic raises ``autoattack_warning``
in the stored flags, in ``flags_for_trials`` and in the report; a damaged notes file makes its
batch be redone. Runtime: ~10 s (AutoAttack on 20 digits examples, a few times)."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from grid.report.markdown import report_markdown
from grid.spec import GridSpec
from grid.stages import evaluation as E
from grid.stages.sanity import check_trial
from grid.store import ResultStore, flags_for_trials, load, load_flags, load_notes, load_trials
from grid.store.layout import notes_path

SPEC = {
    "experiment": "notes", "datasets": ["digits"], "methods": ["none"], "epochs": 1,
    "eval_plan": {"digits": [{"attack": "autoattack", "eps": [0.3]}, {"attack": "fgsm", "eps": [0.3]}]},
    "eval_n": 20, "eval_batch_size": 10,
}


class Noisy(nn.Module):
    """Logit noise at every call on a model that does not say it is randomized."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x):
        return self.model(x) + 0.5 * torch.randn(len(x), 10)


def quiet(done: int, total: int) -> None:
    pass


def test_notes_are_kept_per_autoattack_batch_and_raise_the_flag(tmp_path, digits, undefended_digits_model):
    trial = GridSpec.from_dict(SPEC).expand()[0]
    results = tmp_path / "notes" / "results"
    store = ResultStore(str(results))
    assert E.evaluate(Noisy(undefended_digits_model).eval(), digits, trial, store, "abc", quiet) == 4
    notes = load_notes(tmp_path / "notes")  # the experiment folder, by the one path convention
    assert sorted(set(zip(notes["attack"], notes["batch"]))) == [("autoattack", 0), ("autoattack", 1)]
    assert (notes["kind"] == "recorded").sum() == 2 and notes.loc[notes["kind"] == "warning", "message"].str.contains(
        "randomized defense").all()
    store.write_trial({"trial_id": trial.trial_id, "experiment": trial.experiment, "dataset": "digits", "method": "none",
                       "train_eps": None, "lam": None, "seed": 0, "epochs": 1, "clean_accuracy": 0.9,
                       "losses_json": "[]", "wall_seconds": 1.0, "device": "cpu", "checkpoint_hash": "abc",
                       "recipe": "adam", "hyperparams_json": "{}", "validation_n": 0, "evaluate": "last",
                       "evaluated_epoch": 1})
    flags = check_trial(store, trial)
    assert "autoattack_warning" in {f.flag for f in flags}
    assert "autoattack_warning" in set(load_flags(results)["flag"])
    assert "autoattack_warning" in set(flags_for_trials(str(results), [trial.trial_id])["flag"])
    text = report_markdown(load(results), load_trials(results), notes_df=load_notes(results))
    assert "`autoattack_warning`" in text.split("## Sanity checks")[1].split("\n## ")[0]

    # A damaged notes file: its batch (and only it) is redone, and the notes come back intact.
    damaged = Path(notes_path(store, trial, "autoattack", 0.3, 1))
    damaged.write_bytes(damaged.read_bytes()[:-20])
    assert not store.is_committed_intact(str(damaged))
    assert E.evaluate(Noisy(undefended_digits_model).eval(), digits, trial, store, "abc", quiet) == 1
    assert store.is_committed_intact(str(damaged))


def test_a_healthy_model_keeps_empty_notes_and_no_flag(tmp_path, digits, undefended_digits_model):
    trial = GridSpec.from_dict(SPEC).expand()[0]
    store = ResultStore(str(tmp_path / "results"))
    E.evaluate(undefended_digits_model, digits, trial, store, "abc", quiet)
    notes = load_notes(tmp_path / "results")
    assert list(notes["kind"]) == ["recorded", "recorded"]  # both batches checked, nothing said
    flags = check_trial(store, trial)
    assert "autoattack_warning" not in {f.flag for f in flags}
