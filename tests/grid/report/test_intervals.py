"""95% intervals and paired comparisons against hand computations: Wilson intervals equal the
textbook values, the t interval and the paired (discordant-pairs) interval equal their formulas
worked by hand, every accuracy cell carries them, and a difference whose interval includes 0 is
reported as not resolved. Runtime: < 2 s."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from grid.report.comparisons import comparison_section, comparison_table
from grid.report.intervals import paired_difference, resolved, t_interval, wilson
from grid.report.metrics import robust_accuracy
from grid.report.paper_values import paper_comparison_section

Z = 1.959963984540054


def test_wilson_matches_the_textbook_values():
    # Newcombe (1998), Table I: 95% Wilson intervals.
    assert wilson(50, 100) == pytest.approx((0.4038, 0.5962), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)
    assert wilson(9, 10) == pytest.approx((0.5958, 0.9821), abs=1e-4)
    assert all(math.isnan(v) for v in wilson(0, 0))


def test_t_interval_and_paired_difference_by_hand():
    # Two runs 0.5 and 0.7: mean 0.6, sd 0.1414, t(0.975, 1) = 12.706 → ± 1.2706.
    assert t_interval([0.5, 0.7]) == pytest.approx((0.6 - 1.27062, 0.6 + 1.27062), abs=1e-4)
    assert all(math.isnan(v) for v in t_interval([0.5]))
    # 3 examples robust only under a, 3 only under b, of 10: d = 0, ± z·√6/10 → not resolved.
    d, lo, hi = paired_difference({1, 2, 3, 4, 5, 6}, {4, 5, 6, 7, 8, 9}, set(range(10)))
    assert (d, lo, hi) == pytest.approx((0.0, -Z * math.sqrt(6) / 10, Z * math.sqrt(6) / 10))
    assert not resolved(lo, hi)
    # 8 only under a, 1 only under b, of 100: d = 0.07 ± z·√(9 − 0.49)/100 → resolved.
    d, lo, hi = paired_difference(set(range(58)), set(range(8, 58)) | {60}, set(range(100)))
    assert d == pytest.approx(0.07)
    half = Z * math.sqrt(9 - 49 / 100) / 100
    assert (lo, hi) == pytest.approx((0.07 - half, 0.07 + half)) and resolved(lo, hi)


def rows(method: str, robust: list[int], seed: int = 0, attack: str = "autoattack", eps: float = 0.3,
         lam=None, dataset: str = "mnist") -> list[dict]:
    return [{"experiment": "e", "trial_id": f"{method}{seed}{lam}", "dataset": dataset, "method": method,
             "train_eps": 0.3, "lam": lam, "seed": seed, "epochs": 1, "attack": attack, "norm": "Linf", "eps": eps,
             "sample_idx": i, "label": 0, "pred_clean": 0, "pred_adv": 0, "correct_clean": True,
             "correct_adv": bool(r), "l2": 0.0, "l2_rms": 0.0, "linf": eps, "queries": -1, "seconds": 0.0}
            for i, r in enumerate(robust)]


def test_every_accuracy_cell_carries_its_intervals():
    df = pd.DataFrame(rows("madry", [1, 1, 1, 0]) + rows("madry", [1, 0, 0, 0], seed=1))
    (cell,) = robust_accuracy(df, worst_case=False).itertuples(index=False)
    assert (cell.robust_lo, cell.robust_hi) == pytest.approx(wilson(4, 8))  # over the 8 pooled examples
    assert (cell.seed_lo, cell.seed_hi) == pytest.approx((0.0, 1.0))      # t over 0.75, 0.25, clipped
    single = robust_accuracy(pd.DataFrame(rows("madry", [1, 1, 1, 0])), worst_case=False).iloc[0]
    assert (single.robust_lo, single.robust_hi) == pytest.approx(wilson(3, 4)) and math.isnan(single.seed_lo)


def test_method_comparisons_are_paired_and_say_when_not_resolved():
    # One seed, 100 shared examples: ER robust on 0–59, Madry on 10–59 plus 60–61 (10 vs 2 discordant).
    er = rows("er", [1] * 60 + [0] * 40, lam=5.0)
    madry = rows("madry", [0] * 10 + [1] * 52 + [0] * 38)
    table = comparison_table(pd.DataFrame(er + madry))
    (row,) = table[table["attack"] == "autoattack"].itertuples(index=False)
    d, lo, hi = paired_difference(set(range(60)), set(range(10, 62)), set(range(100)))
    assert (row.difference, row.low, row.high) == pytest.approx((d, lo, hi)) and row.n == 100 and row.seeds == 1
    assert row.resolved == resolved(lo, hi)
    # A 1-example difference on 10 examples is not resolved, and the section says so.
    tiny = pd.DataFrame(rows("er", [1] * 6 + [0] * 4, lam=5.0) + rows("madry", [1] * 5 + [0] * 5))
    text = "\n".join(comparison_section(tiny))
    assert "ER-Classifier λ 5 ε_train 0.3 vs Madry" in text and "not resolved" in text
    # Two seeds: the t interval of the per-seed differences.
    two = pd.DataFrame(er + madry + rows("er", [1] * 70 + [0] * 30, seed=1, lam=5.0) + rows("madry", [1] * 50 + [0] * 50, seed=1))
    (both,) = comparison_table(two)[lambda t: t["attack"] == "autoattack"].itertuples(index=False)
    assert both.seeds == 2 and (both.low, both.high) == pytest.approx(t_interval([d, 0.2]))


def test_paper_comparison_marks_a_published_value_inside_our_interval():
    # ER-Classifier's MNIST AutoAttack in the paper's Table 1: 79.0 %. Ours 78/100 → Wilson ≈ 68.9–85.0.
    acc = robust_accuracy(pd.DataFrame(rows("er", [1] * 78 + [0] * 22, lam=1.0)), by=["dataset", "method", "attack", "eps"])
    text = "\n".join(paper_comparison_section(acc))
    assert "-1.0 (not resolved)" in text
    far = robust_accuracy(pd.DataFrame(rows("er", [1] * 40 + [0] * 60, lam=1.0)), by=["dataset", "method", "attack", "eps"])
    text = "\n".join(paper_comparison_section(far))
    assert "-39.0" in text and "-39.0 (not resolved)" not in text


def test_json_records_carry_both_intervals():
    from grid.report.export import json_records

    df = pd.DataFrame(rows("madry", [1, 1, 1, 0]) + rows("madry", [1, 0, 0, 0], seed=1))
    (record,) = [r for r in json_records(df) if r["attack"] == "autoattack"]
    lo, hi = wilson(4, 8)
    assert record["robust_acc_ci95"] == pytest.approx([100 * lo, 100 * hi], abs=0.05)
    assert record["robust_acc_seed_ci95"] == pytest.approx([0.0, 100.0])
    single = json_records(pd.DataFrame(rows("madry", [1, 1, 1, 0])))[0]
    assert single["robust_acc_seed_ci95"] is None
