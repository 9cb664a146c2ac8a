"""λ chosen on validation (grid.report.selection), checked against hand-made trial rows.

Checked: the λ with the highest mean validation PGD over seeds is chosen, per (dataset, method,
training ε); equal means go to the smaller λ; the reading is taken at the epoch each trial
evaluated (best-validation trials included), not the last; a group with a trial lacking a
validation reading is not chosen; the headline rows keep only the chosen λ and leave other
methods alone; the report section names the choice and says nothing is chosen without readings.
"""

from __future__ import annotations

import json

import pandas as pd

from grid.report.selection import chosen_lambdas, headline_lambdas, selection_section


def trial(trial_id, lam, seed, val, method="er", evaluated=2, dataset="mnist", train_eps=0.3):
    losses = [{"epoch": e + 1, "loss": 1.0, **({} if v is None else {"val_pgd": v, "val_clean": 0.9})}
              for e, v in enumerate(val)]
    return {"trial_id": trial_id, "dataset": dataset, "method": method, "train_eps": train_eps, "lam": lam,
            "seed": seed, "epochs": len(val), "evaluated_epoch": evaluated, "losses_json": json.dumps(losses)}


def test_the_highest_mean_validation_reading_wins_and_ties_go_to_the_smaller_lambda():
    rows = pd.DataFrame([
        trial("a0", 1.0, 0, [0.1, 0.50]), trial("a1", 1.0, 1, [0.1, 0.60]),   # λ 1: mean 0.55
        trial("b0", 5.0, 0, [0.1, 0.70]), trial("b1", 5.0, 1, [0.1, 0.50]),   # λ 5: mean 0.60
        trial("c0", 10.0, 0, [0.1, 0.64]), trial("c1", 10.0, 1, [0.1, 0.56]),  # λ 10: mean 0.60, a tie
    ])
    choice = chosen_lambdas(rows)
    assert choice.loc[choice["chosen"], "lam"].tolist() == [5.0]
    assert choice.set_index("lam")["val_pgd"].round(6).to_dict() == {1.0: 0.55, 5.0: 0.6, 10.0: 0.6}


def test_the_reading_is_at_the_evaluated_epoch():
    rows = pd.DataFrame([trial("a", 1.0, 0, [0.9, 0.2], evaluated=1), trial("b", 5.0, 0, [0.1, 0.5], evaluated=2)])
    choice = chosen_lambdas(rows)
    assert choice.loc[choice["chosen"], "lam"].tolist() == [1.0]


def test_a_group_without_validation_readings_is_not_chosen():
    rows = pd.DataFrame([trial("a", 1.0, 0, [None, None]), trial("b", 5.0, 0, [0.3, 0.4]),
                         trial("c", 1.0, 0, [0.3, 0.4], dataset="cifar10", train_eps=0.031)])
    choice = chosen_lambdas(rows)
    assert not choice[choice["dataset"] == "mnist"]["chosen"].any()
    assert choice[choice["dataset"] == "cifar10"]["chosen"].all()
    lines = "\n".join(selection_section(chosen_lambdas(rows.iloc[:1]), rows.iloc[:1], None, lambda d: 0.3))
    assert "nothing is chosen" in lines


def test_headline_rows_keep_only_the_chosen_lambda():
    trials = pd.DataFrame([trial("a", 1.0, 0, [0.3, 0.4]), trial("b", 5.0, 0, [0.3, 0.6])])
    examples = pd.DataFrame({"dataset": "mnist", "method": ["er", "er", "madry"], "train_eps": 0.3,
                             "lam": [1.0, 5.0, None], "trial_id": ["a", "b", "m"]})
    kept = headline_lambdas(examples, chosen_lambdas(trials))
    assert kept["trial_id"].tolist() == ["b", "m"]
    lines = "\n".join(selection_section(chosen_lambdas(trials), trials, None, lambda d: 0.3))
    assert "**chosen**" in lines and "Last epoch and best validation epoch" in lines
