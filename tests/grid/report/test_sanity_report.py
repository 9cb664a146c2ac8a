"""Sanity flags in the grid: the trainable's steps on the fidelity smoke preset (two of its
methods, one made to diverge) write flags to the store; ``er-grid report`` opens with the
sanity and paper-comparison sections and keeps the collapsed trial out of its tables;
``er-grid query`` has the flags column; the store's flag table round-trips.

No Ray: the trainable's own functions run in-process (the Ray path calls the same ones).
Runtime: ~6 s (two 3-epoch digits trainings, the smoke plan without AutoAttack on 40 examples).
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

import er_core.data
import er_core.methods
from er_core.sanity import Flag
from types import SimpleNamespace

from grid.stages import sanity
from grid.store import flags as store_flags
from grid.store import load_flags
from grid.trial import checkpoints as C
from grid.trial import trainable as T
from grid.stages import evaluation as E
from grid.stages import trial_row as R
from grid.cli import main
from grid.report.paper_values import comparison_rows, paper_comparison_section
from grid.report import robust_accuracy
from grid.spec import GridSpec
from grid.store import ResultStore

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from fidelity import SMOKE  # noqa: E402  (the job file's own preset)


@pytest.fixture(scope="module")
def smoke_store(tmp_path_factory):
    """The smoke preset with none and e_cla; e_cla at lr 10, which diverges on digits (measured
    over seeds 0–3: a constant prediction every time, clean accuracy 0.05–0.125 on the subset;
    no digits class exceeds 15% of the 40-example subset, so any constant predictor sits at or
    under 1/C + 0.05). Clean trainings keep the fixture cheap."""
    torch.set_num_threads(1)
    # AutoAttack left out: on 40 examples it costs 11 s (none) and 27 s (the collapsed model,
    # whose zero gradients make it run every stage) of CPU, most of this file's budget.
    plan = [item for item in SMOKE["eval_plan"]["digits"] if item["attack"] != "autoattack"]
    spec = GridSpec.from_dict({**SMOKE, "methods": ["none", "e_cla"], "hyperparams": {"e_cla": {"lr": 10.0}},
                               "eval_plan": {"digits": plan}})
    root = tmp_path_factory.mktemp("smoke") / "results"
    store = ResultStore(str(root))
    data = er_core.data.load("digits")
    trials = {}
    for trial in spec.expand():
        method = er_core.methods.make(trial.method, trial.dataset, **trial.method_hyperparams())
        state = T.train(method, data, trial, C.TrainState(), lambda *args: None)
        checkpoint_hash = C.weights_hash(method.model)
        E.evaluate(method.model, data, trial, store, checkpoint_hash, lambda done, total: None)
        R.write_trial_row(store, trial, state, checkpoint_hash, R.subset_accuracy(method.model, data, trial), "cpu", 1.0,
                          hyperparams=method.hyperparams)
        sanity.check_trial(store, trial)  # what train_and_evaluate does after the trial row
        trials[trial.method] = trial
    return root, trials


def test_flags_are_stored_per_trial(smoke_store):
    root, trials = smoke_store
    store = ResultStore(str(root))
    assert store_flags.checked_trials(store) == {t.trial_id for t in trials.values()}
    stored = load_flags(root)
    collapsed = stored[stored["flag"] == "collapsed"]
    assert list(collapsed["trial_id"]) == [trials["e_cla"].trial_id]
    assert "clean accuracy" in collapsed["evidence"].iloc[0]
    assert trials["none"].trial_id not in set(collapsed["trial_id"])


def test_report_opens_with_sanity_and_paper_comparison(smoke_store, capsys):
    root, trials = smoke_store
    assert main(["report", str(root)]) == 0
    text = capsys.readouterr().out
    sanity_at, paper_at, figures_at = (text.index(h) for h in
                                       ("## Sanity checks", "## Paper comparison", "## Figures 3/4"))
    assert sanity_at < paper_at < figures_at
    listed = text[sanity_at:paper_at]
    assert f"| digits | e_cla | {trials['e_cla'].trial_id} | `collapsed` | clean accuracy" in listed
    # The collapsed trial is listed there and nowhere in the tables; the sound one stays.
    tables = text[paper_at:]
    assert "| E-CLA |" not in tables and "| digits | e_cla" not in tables
    # digits has no published numbers: one line, not a table of dashes.
    comparison = text[paper_at:figures_at]
    assert "No published numbers for digits" in comparison and "| digits |" not in comparison
    assert "| digits | none |" in tables and "No Defense" in tables


def test_query_has_the_flags_column(smoke_store):
    root, _ = smoke_store
    out = io.StringIO()
    sys_stdout, sys.stdout = sys.stdout, out
    try:
        assert main(["query", str(root), "--format", "csv"]) == 0
    finally:
        sys.stdout = sys_stdout
    table = pd.read_csv(io.StringIO(out.getvalue()), keep_default_na=False)
    # Every row of the diverged trial says so (its saturated net may carry zero_gradients too).
    diverged = table.loc[table["method"] == "e_cla", "flags"]
    assert len(diverged) > 0 and all("collapsed" in flags.split(",") for flags in diverged)
    assert not any("collapsed" in flags.split(",") for flags in table.loc[table["method"] == "none", "flags"])


def test_flag_table_round_trip_and_recompute_when_missing(tmp_path):
    store = ResultStore(str(tmp_path / "results"))
    key = {"experiment": "e", "dataset": "digits", "method": "er", "trial_id": "abc"}
    flag = Flag("abc", "critic_dead", 5e-5, 1e-4, "|critic_w| small")
    sanity.write_flags(store, SimpleNamespace(**key), [flag])
    sanity.write_flags(store, SimpleNamespace(**{**key, "trial_id": "clean1"}), [])  # checked, nothing flagged
    stored = load_flags(store)
    assert stored[["trial_id", "flag", "value"]].values.tolist() == [["abc", "critic_dead", 5e-5]]
    assert store_flags.checked_trials(store) == {"abc", "clean1"}
    assert store_flags.flag_names(store_flags.flags_for_trials(store, ["abc", "clean1"])) == {"abc": "critic_dead"}
    # A rewrite replaces the trial's flags instead of adding to them.
    sanity.write_flags(store, SimpleNamespace(**key), [])
    assert load_flags(store).empty


def test_paper_comparison_differences():
    rows = []
    for method, robust in (("madry", 0.6), ("er", 0.8)):
        for attack in ("autoattack", "rays"):
            rows.append({"dataset": "mnist", "method": method, "train_eps": 0.3, "lam": 5.0 if method == "er" else None,
                         "attack": attack, "norm": "Linf", "eps": 0.3, "robust_accuracy": robust, "runs": 1})
    acc = pd.DataFrame(rows)
    by_method = {r["method"]: r for r in comparison_rows(acc)}
    assert by_method["madry"]["paper_autoattack"] == 69.0 and by_method["madry"]["published_autoattack"] == 88.50
    assert by_method["er"]["paper_rays"] == 75.8 and by_method["er"]["published_autoattack"] is None
    text = "\n".join(paper_comparison_section(acc))
    assert "| mnist | madry, train ε 0.3 | 0.3 | 1 | 60.0 | 69.0 | -9.0 | 60.0 | – | – | 88.5 | -28.5 |" in text
    assert "| mnist | er, λ 5, train ε 0.3 | 0.3 | 1 | 80.0 | 79.0 | +1.0 | 80.0 | 75.8 | +4.2 | – | – |" in text
    assert robust_accuracy(pd.DataFrame()).empty  # the section's input on an empty store


def test_the_report_names_every_check_a_plan_could_not_run():
    """A report of a trial whose plan has PGD at ε 0.1 only: its "Sanity checks" section lists
    ``no_decay``, ``pgd_unconverged``, ``eps0_mismatch`` … as not checked, each with why, and the
    checks the plan does feed (``zero_gradients``) are not among them."""
    from grid.report.markdown import report_markdown

    rows = pd.DataFrame([{
        "experiment": "e", "trial_id": "t1", "dataset": "digits", "method": "none", "train_eps": None, "lam": None,
        "seed": 0, "epochs": 1, "attack": "pgd", "norm": "Linf", "eps": 0.1, "batch": 0, "sample_idx": i,
        "label": 0, "pred_clean": 0, "pred_adv": 0, "correct_clean": True, "correct_adv": i % 2 == 0,
        "l2": 0.1, "l2_rms": 0.01, "linf": 0.1, "queries": 1, "seconds": 0.0, "gradient_failed": False,
        "randomized": False} for i in range(20)])
    section = report_markdown(rows).split("## Sanity checks")[1].split("\n## ")[0]
    assert "Not checked" in section
    for check, why in (("no_decay", "ε ≥ 0.5"), ("pgd_unconverged", "pgd_probe"), ("eps0_mismatch", "ε = 0"),
                       ("autoattack_warning", "no AutoAttack"), ("eot_insufficient", "no AutoAttack")):
        line = next(x for x in section.splitlines() if f"`{check}`" in x)
        assert why in line and "| 1 |" in line, line
    assert "`zero_gradients`" not in section
