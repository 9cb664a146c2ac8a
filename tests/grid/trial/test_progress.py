"""What a trial reports to Tune: the same keys in every report (Tune's table fixes its columns at
the first), the evaluation batches as numbers and as the table's ``done/total`` text, and one
last report with the robust accuracies of the committed rows. No Ray; well under a second.
(The reports of a real run, its progress table and TensorBoard curves: tests/grid/run/test_watching_a_grid.py.)"""

from __future__ import annotations

import pandas as pd
import pytest

from grid.trial.progress import EVAL_TEXT, ROBUST_KEY, ProgressReport, robust_accuracies


def test_every_report_has_the_same_keys_and_the_last_adds_the_robust_accuracies():
    progress = ProgressReport(eval_batches_total=12, resumed_from=0)
    train = progress.train(1, {"epoch": 1, "loss": 0.5, "holdout_accuracy": 0.9})
    evaluation = progress.evaluation(3, 12)
    final = progress.final({"pgd@0.1": 0.75})
    assert set(train) == set(evaluation) == set(final) - {ROBUST_KEY}
    assert [r["phase"] for r in (train, evaluation, final)] == ["train", "eval", "done"]
    assert [r[EVAL_TEXT] for r in (train, evaluation, final)] == ["0/12", "3/12", "12/12"]
    # An evaluation report repeats the last epoch's numbers, so the table never shows a blank.
    assert evaluation["epoch"] == final["epoch"] == 1 and evaluation["holdout_accuracy"] == 0.9
    assert final[ROBUST_KEY] == {"pgd@0.1": 0.75}


def test_robust_accuracy_counts_an_example_correct_clean_and_under_attack():
    rows = pd.DataFrame({
        "attack": ["pgd"] * 4 + ["fgsm"] * 2,
        "eps": [0.1] * 4 + [0.3] * 2,
        "correct_clean": [True, True, False, True, True, True],
        "correct_adv": [True, False, True, True, False, False],  # a wrong clean verdict is never robust
    })
    assert robust_accuracies(rows) == pytest.approx({"pgd@0.1": 0.5, "fgsm@0.3": 0.0})
    assert robust_accuracies(rows.iloc[:0]) == {}
