"""Table 2 read both ways: C&W accuracy at ℓ2/√N ≤ 0.005 (the stored ``l2_rms``) and at
ℓ2/N ≤ 0.005 (``l2`` over the dataset's number of input values), every cell checked against a
hand computation from the stored ℓ2 values; the undefended row, the paper's Table 2 values, the
rule that says which reading they fit, and named C&W settings kept apart."""

from __future__ import annotations

import json
import math
import statistics

import pandas as pd
import pytest

from grid.report import cw_bounded, cw_table, report_markdown
from grid.report.paper_values import (
    CW_PER_VALUE, CW_RMS, CW_READINGS, cw_comparison_rows, cw_reading_fit, paper_comparison_section, paper_eps,
)
from grid.report.tables import cw_accuracy
from grid.store import ResultStore

# (dataset, method, λ, train ε, seed) → per example (correct_clean, attack failed, stored ℓ2).
# ℓ2 = 3.10 is the Defense-GAN evaluation's printed example: 0.0040 per value but 0.11 RMS on MNIST.
RUNS = {
    ("mnist", "none", None, None, 0): [(True, False, 0.05), (True, False, 0.5), (True, False, 1.2),
                                       (True, False, 3.10), (True, True, 0.0), (False, False, 0.0)],
    ("mnist", "none", None, None, 1): [(True, False, 0.2), (True, False, 1.0), (True, False, 2.0),
                                       (True, False, 4.5), (True, False, 0.1), (True, False, 0.3)],
    ("mnist", "madry", None, 0.3, 0): [(True, False, 2.0), (True, False, 3.0), (True, False, 4.0),
                                       (True, False, 5.0), (True, False, 0.13), (True, False, 0.15)],
    ("mnist", "er", 1.0, 0.3, 0): [(True, False, 0.1), (True, False, 4.0), (True, False, 5.0),
                                   (True, False, 3.95), (True, False, 6.0), (True, True, 0.0)],
    ("mnist", "er", 1.0, 0.3, 1): [(True, False, 3.0), (True, False, 4.2), (False, False, 0.0),
                                   (True, False, 3.5), (True, False, 7.0), (True, False, 0.2)],
    # digits: 8×8 inputs, N = 64, so the per-value cap is ℓ2 0.32 and the RMS cap ℓ2 0.04.
    ("digits", "none", None, None, 0): [(True, False, 0.3), (True, False, 0.33), (True, False, 0.03)],
}
N = {"mnist": 28 * 28, "digits": 8 * 8}  # input values, written out by hand


def write_store(root, runs=RUNS, config=None) -> pd.DataFrame:
    """``runs`` through the store's own writer, read back as the report reads them."""
    store = ResultStore(str(root))
    for (dataset, method, lam, train_eps, seed), examples in runs.items():
        rows = [{
            "train_eps": train_eps, "lam": lam, "seed": seed, "epochs": 2, "norm": "L2", "sample_idx": i,
            "label": 1, "pred_clean": 1 if clean else 2, "pred_adv": 1 if failed else 3, "correct_clean": clean,
            "correct_adv": clean and failed, "l2": l2, "l2_rms": l2 / math.sqrt(N[dataset]), "linf": 0.0,
            "queries": 10, "seconds": 0.01, "attack_config": json.dumps(config or {"attack": "cw_l2"}),
            "checkpoint_hash": "abc", "eval_subset": f"n={len(examples)},seed=0",
            "library_versions": "{}", "gradient_failed": False, "randomized": False,
        } for i, (clean, failed, l2) in enumerate(examples)]
        store.write_batch(rows, experiment="e", dataset=dataset, method=method,
                          trial_id=f"{dataset}-{method}-{seed}-{(config or {}).get('preset', '')}",
                          attack="cw_l2", eps=0.0, batch=0)
    return store.load()


def by_hand(df: pd.DataFrame, dataset: str, method: str, per_value: bool) -> list[float]:
    """Per seed, the share of examples correct clean whose C&W failed or needed ℓ2 beyond the
    bound: ℓ2/N > 0.005 (per value) or the stored l2_rms > 0.005, straight from the rows."""
    shares = []
    mine = df[(df["dataset"] == dataset) & (df["method"] == method)]
    for _, trial in sorted(mine.groupby("seed")):
        robust = [bool(r.correct_clean) and (bool(r.correct_adv) or
                                             (r.l2 / N[dataset] if per_value else r.l2_rms) > 0.005)
                  for r in trial.itertuples()]
        shares.append(sum(robust) / len(robust))
    return shares


def cell(shares: list[float], n: int) -> str:
    """The report's cell by hand: mean, std over seeds, and the wider of the Wilson interval over
    the n pooled examples and the t interval over the seeds (clipped to [0, 1])."""
    from scipy.stats import t as student

    mean = sum(shares) / len(shares)
    z = 1.959963984540054
    centre, spread = (mean + z * z / (2 * n)) / (1 + z * z / n), z * (mean * (1 - mean) / n + z * z / (4 * n * n)) ** 0.5
    intervals = [(centre - spread / (1 + z * z / n), centre + spread / (1 + z * z / n))]
    if len(shares) > 1:
        half = student.ppf(0.975, len(shares) - 1) * statistics.stdev(shares) / len(shares) ** 0.5
        intervals.append((max(0.0, mean - half), min(1.0, mean + half)))
    lo, hi = max(intervals, key=lambda i: i[1] - i[0])
    ci = f"({100 * max(lo, 0.0):.1f}–{100 * min(hi, 1.0):.1f})"
    if len(shares) == 1:
        return f"{100 * mean:.1f} {ci} [n={n}]"
    return f"{100 * mean:.1f} ± {100 * statistics.stdev(shares):.1f} {ci} [n={n // len(shares)} × {len(shares)} seeds]"


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    return write_store(tmp_path_factory.mktemp("cw") / "results")


def test_bounded_verdicts_per_example_under_both_readings(rows):
    for reading, per_value in ((CW_RMS, False), (CW_PER_VALUE, True)):
        judged = cw_bounded(rows, reading=reading)
        for r in judged.itertuples():
            distortion = r.l2 / N[r.dataset] if per_value else r.l2_rms
            assert r.correct_adv == (bool(r.correct_clean) and (distortion > 0.005 or r.l2 == 0.0)), r
    # The printed Defense-GAN example: inside the per-value bound (fooled), outside the RMS one (robust).
    example = (rows["method"] == "none") & (rows["seed"] == 0) & (rows["sample_idx"] == 3)
    assert cw_bounded(rows, reading=CW_RMS)[example]["correct_adv"].tolist() == [True]
    assert cw_bounded(rows, reading=CW_PER_VALUE)[example]["correct_adv"].tolist() == [False]


def test_table2_cells_equal_a_hand_computation_under_both_readings(rows):
    table = cw_table(rows)
    assert list(table.columns) == ["MNIST ℓ2/√N ≤ 0.005", "MNIST ℓ2/N ≤ 0.005", "MNIST paper",
                                   "digits ℓ2/√N ≤ 0.005", "digits ℓ2/N ≤ 0.005"]
    # The undefended model heads the table, the paper-only Defense-GAN closes it.
    assert list(table.index) == ["No Defense", "Madry's Adv", "ER-Classifier", "Defense-GAN"]
    for label, method in (("No Defense", "none"), ("Madry's Adv", "madry"), ("ER-Classifier", "er")):
        n = int(((rows["dataset"] == "mnist") & (rows["method"] == method)).sum())
        assert table.loc[label, "MNIST ℓ2/√N ≤ 0.005"] == cell(by_hand(rows, "mnist", method, False), n)
        assert table.loc[label, "MNIST ℓ2/N ≤ 0.005"] == cell(by_hand(rows, "mnist", method, True), n)
    assert table.loc["No Defense", "digits ℓ2/N ≤ 0.005"] == cell(by_hand(rows, "digits", "none", True), 3)
    assert table.loc["No Defense", "digits ℓ2/√N ≤ 0.005"] == cell(by_hand(rows, "digits", "none", False), 3)
    assert table.loc["ER-Classifier", "MNIST paper"] == "99.1" and table.loc["Defense-GAN", "MNIST paper"] == "55.0"
    assert table.loc["Defense-GAN"].tolist().count("–") == 4 and table.loc["Madry's Adv", "MNIST paper"] == "–"


def test_report_section_says_which_reading_fits_from_the_measured_rows(rows):
    text = report_markdown(rows)
    table2 = text.split("## Table 2")[1].split("\n## ")[0]
    none_rms = 100 * statistics.mean(by_hand(rows, "mnist", "none", False))
    none_value = 100 * statistics.mean(by_hand(rows, "mnist", "none", True))
    assert none_rms > 55.0 >= none_value  # what these rows were built to show
    assert (f"- C&W setting default, ℓ2/√N ≤ 0.005: undefended {none_rms:.1f} % (clean 91.7 %, 2 run(s)): "
            "cannot be the reading behind 55.0 %") in table2
    assert f"- C&W setting default, ℓ2/N ≤ 0.005: undefended {none_value:.1f} % (clean 91.7 %, 2 run(s)): fits" in table2
    assert "- C&W setting default: only ℓ2/N ≤ 0.005 fits" in table2
    # The paper's Table 2 values in the comparison section, ours beside them (Δ = ours − paper).
    comparison = text.split("## Paper comparison")[1].split("\n## ")[0]
    er_rms = 100 * statistics.mean(by_hand(rows, "mnist", "er", False))
    er_value = 100 * statistics.mean(by_hand(rows, "mnist", "er", True))
    assert (f"| mnist | er, λ 1, train ε 0.3 | default | 2 | {er_rms:.1f} | {er_rms - 99.1:+.1f} | "
            f"{er_value:.1f} | {er_value - 99.1:+.1f} | 99.1 |") in comparison
    assert "| mnist | Defense-GAN (not run here) | – | – | – | – | – | – | 55.0 |" in comparison
    assert f"| mnist | none | default | 2 | {none_rms:.1f} | – | {none_value:.1f} | – | – |" in comparison


def acc_frame(values: dict, clean: float = 0.99, method: str = "none") -> pd.DataFrame:
    """Table 2 accuracy rows of one MNIST configuration: reading key → robust accuracy."""
    return pd.DataFrame([{"dataset": "mnist", "method": method, "train_eps": None, "lam": None, "attack": "cw_l2",
                          "cw_setting": "", "reading": key, "robust_accuracy": robust, "robust_std": float("nan"),
                          "clean_accuracy": clean, "runs": 1, "n": 100, "n_planned": 100}
                         for key, robust in values.items()])


def test_fit_rule_reports_what_the_measurement_gives():
    both = "\n".join(cw_reading_fit(acc_frame({"rms": 0.40, "per_value": 0.0})))
    assert "every reading fits: the rows do not tell them apart" in both
    neither = "\n".join(cw_reading_fit(acc_frame({"rms": 0.98, "per_value": 0.60})))
    assert "no reading fits" in neither and neither.count("): cannot be the reading") == 2
    on_the_number = "\n".join(cw_reading_fit(acc_frame({"rms": 0.98, "per_value": 0.55})))
    assert "only ℓ2/N ≤ 0.005 fits" in on_the_number  # at most 55.0 %: fits
    weak = "\n".join(cw_reading_fit(acc_frame({"rms": 0.50, "per_value": 0.1}, clean=0.5)))
    assert "clean accuracy 50.0 % is itself at most 55.0 %: not decided" in weak and "): fits" not in weak
    absent = "\n".join(cw_reading_fit(acc_frame({"rms": 0.5, "per_value": 0.1}, method="er")))
    assert "no `none` C&W rows on mnist: not decided" in absent
    assert "not decided" in "\n".join(cw_reading_fit(None))


def test_comparison_lists_table2_beside_measured_datasets_only(rows):
    """No AutoAttack, RayS or C&W rows: no comparison section (the report's opening line names
    the attacks). C&W rows on MNIST: the paper's Table 2 values beside them, Defense-GAN included;
    on digits alone: one line, no table of dashes."""
    assert cw_comparison_rows(None) == [] and paper_comparison_section(pd.DataFrame()) == []
    mnist = "\n".join(paper_comparison_section(pd.DataFrame(), cw_accuracy(rows)))
    assert "| mnist | Defense-GAN (not run here) | – | – | – | – | – | – | 55.0 |" in mnist
    assert "No published numbers for digits" in mnist and "| digits |" not in mnist
    digits = paper_comparison_section(pd.DataFrame(), cw_accuracy(rows[rows["dataset"] == "digits"]))
    assert [line for line in digits if line] == [
        "## Paper comparison",
        "No published numbers for digits: the paper and the AutoAttack leaderboard report mnist, cifar10, stl10, "
        "tiny_imagenet only."]
    assert paper_eps("mnist") == 0.3  # Table 2's bound is not an ε of Tables 1 and 3


def test_named_settings_are_kept_apart(tmp_path, rows):
    notebook = {("mnist", "none", None, None, 2): [(True, False, 0.05), (True, False, 0.06)]}
    both = pd.concat([rows, write_store(tmp_path / "nb", notebook, {"attack": "cw_l2", "preset": "defensegan"})],
                     ignore_index=True)
    table = cw_table(both)
    assert table.loc["No Defense", "MNIST ℓ2/√N ≤ 0.005 (defensegan)"] == "0.0 (0.0–65.8) [n=2]"
    assert table.loc["No Defense", "MNIST ℓ2/√N ≤ 0.005"] == cell(by_hand(rows, "mnist", "none", False), 12)
    acc = cw_accuracy(both)
    assert set(acc["cw_setting"]) == {"", "defensegan"} and set(acc["reading"]) == {r.key for r in CW_READINGS}


def test_bad_input_gets_one_clear_error(rows):
    unknown = rows.assign(dataset="nowhere")
    with pytest.raises(ValueError, match="ℓ2 per input value needs the dataset's shape: unknown dataset 'nowhere'"):
        cw_bounded(unknown, reading=CW_PER_VALUE)
    assert len(cw_bounded(unknown, reading=CW_RMS)) == len(rows)  # the RMS reading needs no shape
    with pytest.raises(ValueError, match="column 'l2' not in the rows"):
        cw_bounded(rows.drop(columns=["l2"]), reading=CW_PER_VALUE)
    with pytest.raises(ValueError, match="bound"):
        cw_bounded(rows, bound=-1.0)
