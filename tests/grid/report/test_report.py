"""Report logic on hand-made frames: per-example worst case, the C&W bound, mean ± std over seeds."""

from __future__ import annotations

import dataclasses
import json
import re
import math

import pandas as pd
import pytest

from grid.report import (
    WORST_CASE, attack_table, cw_bounded, cw_table, detection_tables, figure_table, pgd_curves,
    report_markdown, robust_accuracy, settings_table, worst_case_table,
)
from grid.store import ROW_SCHEMA


def frame(records: list[dict]) -> pd.DataFrame:
    """Example rows with the store's columns; unspecified columns get neutral values."""
    base = {
        "experiment": "unit", "dataset": "mnist", "method": "er", "train_eps": 0.3, "lam": 1.0,
        "seed": 0, "epochs": 2, "attack": "pgd", "norm": "Linf", "eps": 0.3, "batch": 0,
        "label": 0, "pred_clean": 0, "pred_adv": 0, "correct_clean": True, "correct_adv": True,
        "l2": 0.0, "l2_rms": 0.0, "linf": 0.0, "queries": -1, "seconds": 0.0,
    }
    rows = [{**base, "trial_id": f"{r.get('method', 'er')}{r.get('seed', 0)}{r.get('lam', 1.0)}", **r}
            for r in records]
    df = pd.DataFrame(rows)
    assert set(df.columns) <= set(ROW_SCHEMA.names)
    return df


def attack_rows(attack: str, robust: list[int], norm: str = "Linf", eps: float = 0.3, **common) -> list[dict]:
    return [{"attack": attack, "norm": norm, "eps": eps, "sample_idx": i, "correct_adv": bool(r), **common}
            for i, r in enumerate(robust)]


def acc_of(table: pd.DataFrame, attack: str) -> pd.Series:
    row = table[table["attack"] == attack]
    assert len(row) == 1, f"expected one {attack} row, got {len(row)}"
    return row.iloc[0]


def test_worst_case_is_per_example_over_attacks_at_an_eps():
    records = (
        attack_rows("pgd", [1, 0, 1, 1, 1])
        # example 2 survives PGD but not AutoAttack: not robust in the worst case.
        + attack_rows("autoattack", [1, 1, 0, 1])  # example 4 not evaluated yet
        # an ℓ2 attack at the same ε value is another threat model: not in the ℓ∞ ensemble.
        + attack_rows("cw_l2", [0, 0, 0, 0, 0], norm="L2")
    )
    # Example 3 is misclassified clean: never robust, whatever the attack said.
    for r in records:
        if r["sample_idx"] == 3:
            r["correct_clean"] = False
    table = robust_accuracy(frame(records))
    assert acc_of(table, "pgd").robust_accuracy == pytest.approx(3 / 5)
    assert acc_of(table, "autoattack").robust_accuracy == pytest.approx(2 / 4)
    worst = acc_of(table, WORST_CASE)
    # Examples 0–3 (those both attacks evaluated): robust only example 0.
    assert worst.robust_accuracy == pytest.approx(1 / 4) and worst.n == 4
    assert worst.clean_accuracy == pytest.approx(3 / 4)
    assert (table["attack"] == WORST_CASE).sum() == 1  # no ensemble for the lone ℓ2 attack
    # Grouped without attack, the pseudo-attack must not be averaged in: 7 real ℓ∞/ℓ2 rows robust 5/14.
    overall = robust_accuracy(frame(records), by=["dataset", "method"]).iloc[0]
    assert overall.n == 14 and overall.robust_accuracy == pytest.approx(5 / 14)


def test_cw_counts_robust_when_attack_failed_or_distortion_exceeds_bound():
    cases = [  # (correct_clean, attack failed, l2_rms)
        (True, True, 0.0),      # attack found nothing: robust
        (True, False, 0.01),    # adversarial, but only beyond the bound: robust
        (True, False, 0.003),   # adversarial within the bound: not robust
        (True, False, 0.005),   # exactly on the bound is inside the threat model: not robust
        (False, False, 0.0),    # misclassified clean: not robust
    ]
    records = [{"attack": "cw_l2", "norm": "L2", "eps": 0.0, "sample_idx": i, "correct_clean": c,
                "correct_adv": failed, "l2_rms": rms} for i, (c, failed, rms) in enumerate(cases)]
    bounded = cw_bounded(frame(records), bound=0.005)
    assert list(bounded["correct_adv"]) == [True, True, False, False, False]
    table = robust_accuracy(bounded, by=["dataset", "method", "attack"])
    assert acc_of(table, "cw_l2").robust_accuracy == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="bound"):
        cw_bounded(frame(records), bound=0)


def test_mean_std_over_seeds_and_configs_kept_apart():
    records = []
    for seed, robust in [(0, [1, 0, 0, 0]), (1, [1, 1, 0, 0]), (2, [1, 1, 1, 0])]:
        records += attack_rows("pgd", robust, seed=seed)
    records += attack_rows("pgd", [1, 1, 1, 1], seed=0, lam=10.0)  # another λ: a config, not a run
    table = robust_accuracy(frame(records))
    lam1 = table[table["lam"] == 1.0].iloc[0]
    assert lam1.robust_accuracy == pytest.approx(0.5)
    assert lam1.robust_std == pytest.approx(0.25)  # std of 0.25, 0.5, 0.75 with ddof=1
    assert lam1.runs == 3 and lam1.n == 12
    lam10 = table[table["lam"] == 10.0].iloc[0]
    assert lam10.robust_accuracy == 1.0 and lam10.runs == 1 and math.isnan(lam10.robust_std)


def test_methods_without_lambda_group_with_nan_keys():
    records = attack_rows("pgd", [1, 0], method="none", lam=None, train_eps=None, seed=0)
    records += attack_rows("pgd", [1, 1], method="none", lam=None, train_eps=None, seed=1)
    table = robust_accuracy(frame(records))
    assert len(table) == 1 and table.iloc[0].runs == 2 and table.iloc[0].robust_accuracy == pytest.approx(0.75)


def test_empty_frame_gives_empty_table():
    table = robust_accuracy(pd.DataFrame(columns=ROW_SCHEMA.names))
    assert table.empty and {"robust_accuracy", "runs", "n", "attack"} <= set(table.columns)


def test_report_markdown_has_the_paper_tables():
    records = []
    for seed in (0, 1):
        for eps in (0.0, 0.3):
            records += attack_rows("pgd", [1, 1, seed, 0], eps=eps, seed=seed)
        records += attack_rows("autoattack", [1, 0, 0, 0], seed=seed)
        records += attack_rows("rays", [1, 1, 1, 0], seed=seed, queries=100)
        records += [{"attack": "cw_l2", "norm": "L2", "eps": 0.0, "sample_idx": i, "seed": seed,
                     "correct_adv": False, "l2_rms": rms} for i, rms in enumerate([0.001, 0.01, 0.02, 0.0])]
    trials = pd.DataFrame([{"trial_id": f"er{s}1.0", "dataset": "mnist", "method": "er", "train_eps": 0.3,
                            "lam": 1.0, "clean_accuracy": 0.9, "wall_seconds": 120.0} for s in (0, 1)])
    text = report_markdown(frame(records), trials)
    for heading in ("Figures 3/4", "### mnist", "Table 1: AutoAttack", "Table 2: C&W", "Table 3: RayS", "Trials"):
        assert heading in text
    # PGD at ε=0.3: seeds give 0.5 and 0.75 → 62.5 ± 17.7 over 2 runs.
    assert "62.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds]" in text
    # AutoAttack 25 %; worst case over pgd, autoattack, rays per example: example 0 only → 25 %.
    table1 = text.split("Table 1")[1].split("Table 2")[0]
    assert "| mnist | er (λ=1) | 0.3 | 100.0 ± 0.0 [n=4 × 2 seeds] | 25.0 ± 0.0 (7.1–59.1) [n=4 × 2 seeds] | 25.0 ± 0.0 (7.1–59.1) [n=4 × 2 seeds] |" in table1
    # RMS reading: 0.01 and 0.02 > 0.005 → 50 %; per value, every stored l2 is 0 → 0 %.
    table2 = text.split("## Table 2")[1].split("## Table 3")[0]
    assert "| ER-Classifier | 50.0 ± 0.0 (21.5–78.5) [n=4 × 2 seeds] | 0.0 ± 0.0 (0.0–32.4) [n=4 × 2 seeds] | 99.1 |" in table2
    assert "| 100 |" in text.split("Table 3")[1]  # mean queries
    assert detection_tables(None) == "" and "Detection" not in text


# --------------------------------------------------------------------------- paper layout

def runs(dataset: str, method: str, attack: str, eps: float, per_seed: dict, lam=None, train_eps=None,
         **common) -> list[dict]:
    """Rows of one configuration: ``per_seed`` maps seed → robust flags of examples 0, 1, ..."""
    out = []
    for seed, robust in per_seed.items():
        out += attack_rows(attack, robust, eps=eps, dataset=dataset, method=method, seed=seed, lam=lam,
                           train_eps=train_eps, trial_id=f"{dataset}-{method}-{lam}-{seed}", **common)
    return out


def grid_frame() -> pd.DataFrame:
    """Two datasets, four configurations, two seeds, AutoAttack and PGD (no RayS, no C&W)."""
    r = []
    # MNIST, AutoAttack at ε 0.3.
    r += runs("mnist", "none", "autoattack", 0.3, {0: [0, 0, 0, 0], 1: [1, 0, 0, 0]})
    r += runs("mnist", "madry", "autoattack", 0.3, {0: [1, 1, 0, 0], 1: [1, 1, 1, 0]}, train_eps=0.3)
    r += runs("mnist", "er", "autoattack", 0.3, {0: [1, 1, 1, 0], 1: [1, 1, 1, 1]}, lam=1.0, train_eps=0.3)
    r += runs("mnist", "er", "autoattack", 0.3, {0: [1, 0, 0, 0]}, lam=10.0, train_eps=0.3)
    # PGD at the same ε for madry only: its worst case is per example over both attacks.
    r += runs("mnist", "madry", "pgd", 0.3, {0: [1, 0, 1, 0], 1: [1, 1, 1, 1]}, train_eps=0.3)
    # CIFAR10 ran AutoAttack at two ε: one column each; no `none`, no λ=10 there.
    r += runs("cifar10", "madry", "autoattack", 0.03, {0: [1, 0, 0, 0]}, train_eps=0.03)
    r += runs("cifar10", "madry", "autoattack", 0.01, {0: [1, 1, 0, 0]}, train_eps=0.03)
    r += runs("cifar10", "er", "autoattack", 0.03, {0: [1, 1, 0, 0]}, lam=1.0, train_eps=0.03)
    return frame(r)


def test_table1_has_methods_down_and_dataset_eps_across():
    table = attack_table(grid_frame(), "autoattack")
    assert list(table.columns) == ["MNIST ε=0.3", "CIFAR10 ε=0.01", "CIFAR10 ε=0.03"]
    # λ names the ER rows everywhere because MNIST ran two λ; training ε differs per dataset
    # (0.3 vs 0.03) but is one per dataset, so Madry's Adv stays one row.
    assert list(table.index) == ["No Defense", "Madry's Adv", "ER-Classifier (λ=1)", "ER-Classifier (λ=10)"]
    assert table.loc["No Defense"].tolist() == ["12.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds]", "–", "–"]  # 0 % and 25 %
    assert table.loc["Madry's Adv"].tolist() == ["62.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds]", "50.0 (15.0–85.0) [n=4]", "25.0 (4.6–69.9) [n=4]"]
    assert table.loc["ER-Classifier (λ=1)"].tolist() == ["87.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds]", "–", "50.0 (15.0–85.0) [n=4]"]
    assert table.loc["ER-Classifier (λ=10)"].tolist() == ["25.0 (4.6–69.9) [n=4]", "–", "–"]


def test_worst_case_table_and_settings():
    df = grid_frame()
    worst = worst_case_table(df)
    # madry at MNIST ε 0.3, per example over PGD and AutoAttack: seed 0 [1,0,0,0], seed 1 [1,1,1,0].
    assert list(worst.columns) == ["MNIST ε=0.3"] and list(worst.index) == ["Madry's Adv"]
    assert worst.loc["Madry's Adv", "MNIST ε=0.3"] == "50.0 ± 35.4 (0.0–100.0) [n=4 × 2 seeds]"
    settings = settings_table(df)
    assert settings.loc["Madry's Adv"].tolist() == ["train ε=0.3", "train ε=0.03"]
    assert settings.loc["ER-Classifier (λ=1)", "CIFAR10"] == "λ=1, train ε=0.03"
    assert "No Defense" not in settings.index  # nothing to say about it


def test_missing_attacks_give_no_table():
    """Attacks without rows get no section: one line near the top names them and their tables."""
    df = grid_frame()
    assert attack_table(df, "rays") is None and cw_table(df) is None
    text = report_markdown(df)
    assert "## Table 2" not in text and "## Table 3" not in text and "_no cw_l2" not in text and "_no rays" not in text
    assert "Not in these rows, so left out: C&W-ℓ2 (Table 2), RayS (Table 3).\n" in text.split("## Sanity")[0]
    assert "Not in these rows" not in report_markdown(frame(
        attack_rows("pgd", [1]) + attack_rows("autoattack", [1]) + attack_rows("rays", [1])
        + attack_rows("cw_l2", [1], norm="L2", eps=0.0)))
    table1 = text.split("Table 1: AutoAttack")[1].split("\n## ")[0]
    assert "| ER-Classifier (λ=1) | 87.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds] | – | 50.0 (15.0–85.0) [n=4] |" in table1
    assert "| Madry's Adv | 50.0 ± 35.4 (0.0–100.0) [n=4 × 2 seeds] |" in text.split("## Worst case")[1]
    assert "MNIST ε=0.3: over autoattack, pgd" in text


def test_cw_table_one_column_per_dataset_and_reading():
    from grid.report.paper_values import CW_PER_VALUE, CW_RMS

    rows = [{"attack": "cw_l2", "norm": "L2", "eps": 0.0, "sample_idx": i, "dataset": dataset, "method": "er",
             "correct_adv": False, "l2_rms": rms, "l2": 0.0, "trial_id": f"cw-{dataset}"}
            for dataset in ("mnist", "digits") for i, rms in enumerate([0.001, 0.01, 0.02, 0.0])]
    table = cw_table(frame(rows), readings=(CW_RMS,))
    # No λ split (one λ per dataset); the paper's Table 2 column only where it has values (MNIST).
    assert table.to_dict() == {"MNIST ℓ2/√N ≤ 0.005": {"ER-Classifier": "50.0 (15.0–85.0) [n=4]", "Defense-GAN": "–"},
                               "MNIST paper": {"ER-Classifier": "99.1", "Defense-GAN": "55.0"},
                               "digits ℓ2/√N ≤ 0.005": {"ER-Classifier": "50.0 (15.0–85.0) [n=4]", "Defense-GAN": "–"}}
    looser = (dataclasses.replace(CW_RMS, bound=0.015), CW_PER_VALUE)
    assert cw_table(frame(rows), readings=looser).loc["ER-Classifier"].tolist() == [
        "25.0 (4.6–69.9) [n=4]", "0.0 (0.0–49.0) [n=4]", "99.1", "25.0 (4.6–69.9) [n=4]", "0.0 (0.0–49.0) [n=4]"]


def test_figure_tables_rows_eps_columns_methods():
    r = []
    for eps, none0, none1, ecla in ((0.0, [1, 1, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]),
                                    (0.1, [1, 1, 0, 0], [1, 0, 0, 0], [1, 0, 0, 0])):
        r += runs("mnist", "none", "pgd", eps, {0: none0, 1: none1})
        r += runs("mnist", "e_cla", "pgd", eps, {0: ecla})
    curves = pgd_curves(frame(r))
    assert list(curves["label"].unique()) == ["No Defense", "E-CLA"]  # the paper's order
    fig3 = figure_table(curves, "mnist")
    assert list(fig3.index) == ["0", "0.1"] and list(fig3.columns) == ["No Defense", "E-CLA"]
    assert fig3.loc["0.1"].tolist() == ["37.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds]", "25.0 (4.6–69.9) [n=4]"]
    assert list(figure_table(curves, "mnist", ["e_cla", "vae_cla", "er_minus"]).columns) == ["E-CLA"]
    text = report_markdown(frame(r))
    assert "Figure 4, E-CLA:" in text  # only the Figure 4 methods that ran are named
    assert "| 0.1 | 37.5 ± 17.7 (0.0–100.0) [n=4 × 2 seeds] | 25.0 (4.6–69.9) [n=4] |" in text


def test_cells_carry_n_and_mark_fewer_examples_than_planned():
    # The plan asked for 4 examples per (attack, ε) (eval_subset "n=4"); seed 1's PGD stored only 2.
    records = attack_rows("pgd", [1, 1, 0, 0], seed=0, eval_subset="n=4,seed=0")
    records += attack_rows("pgd", [1, 0], seed=1, eval_subset="n=4,seed=0")
    acc = robust_accuracy(frame(records), worst_case=False).iloc[0]
    assert (acc.n, acc.n_planned) == (6, 8)
    table = attack_table(frame(records), "pgd")
    assert table.loc["ER-Classifier"].tolist() == ["50.0 ± 0.0 (18.8–81.2) [n=6 of 8 over 2 runs: incomplete]"]
    complete = attack_table(frame(attack_rows("pgd", [1, 1, 0, 0], eval_subset="n=4,seed=0")), "pgd")
    assert complete.loc["ER-Classifier"].tolist() == ["50.0 (15.0–85.0) [n=4]"]


def test_display_names_and_order_follow_the_registries():
    from grid.report.names import dataset_name, dataset_rank, method_name, method_rank

    # Datasets: the paper's four in its order, then the digits demo set, then unknown names A–Z.
    datasets = ["zeta", "digits", "tiny_imagenet", "alpha", "stl10", "cifar10", "mnist"]
    assert sorted(datasets, key=dataset_rank) == ["mnist", "cifar10", "stl10", "tiny_imagenet", "digits",
                                                  "alpha", "zeta"]
    assert [dataset_name(d) for d in ("tiny_imagenet", "cifar10", "digits", "zeta")] == [
        "Tiny ImageNet", "CIFAR10", "digits", "zeta"]
    # Methods: the paper's table rows, then unknown names A–Z, each under the paper's name.
    methods = ["vae_cla", "mystery", "er_minus", "none", "e_cla", "trades", "er", "rse", "madry", "er_trades", "abc"]
    assert [method_name(m) for m in sorted(methods, key=method_rank)] == [
        "No Defense", "Madry's Adv", "Trades", "RSE", "ER-Classifier", "ER-Classifier−", "ER-Trades", "E-CLA",
        "VAE-CLA", "abc", "mystery"]


def test_cells_count_distinct_examples_and_seeds():
    """360 examples over 3 seeds read ``n=360 × 3 seeds`` (not n=1080)."""
    from grid.report.formatting import fmt_acc

    assert fmt_acc(0.5, 0.1, 3, n=1080) == "50.0 ± 10.0 [n=360 × 3 seeds]"
    assert fmt_acc(0.5, float("nan"), 1, n=360) == "50.0 [n=360]"
    assert fmt_acc(0.5, 0.1, 2, n=7) == "50.0 ± 10.0 [n=7 over 2 runs]"  # unequal runs: the total, said so
    assert fmt_acc(0.5, 0.1, 2, n=6, planned=8) == "50.0 ± 10.0 [n=6 of 8 over 2 runs: incomplete]"


# --------------------------------------------------------------------------- fit to hand on

ACCURACY_CELL = re.compile(r"^\d+\.\d( ± \d+\.\d)?( \(\d+\.\d–\d+\.\d\))? \[")


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """(header cells, data rows) of every markdown table in ``text``."""
    tables, lines = [], text.splitlines()
    for i in range(len(lines) - 1):
        if lines[i].startswith("| ") and lines[i + 1].startswith(("|---", "| --- ")):
            rows = []
            for line in lines[i + 2:]:
                if not line.startswith("|"):
                    break
                rows.append([c.strip() for c in line.strip("|").split(" | ")])
            tables.append(([c.strip() for c in lines[i].strip("|").split(" | ")], rows))
    return tables


def test_settings_show_each_attack_configuration_once_with_its_eps():
    """A PGD sweep stores one config per ε: the settings show it once, with every ε it ran at; a
    second PGD setting (the sanity point at 0.5 with 40 steps) is a row of its own."""
    records = []
    for seed in (0, 1):
        for eps in (0.0, 0.1, 0.2):
            records += attack_rows("pgd", [1, 0], eps=eps, seed=seed,
                                   attack_config=json.dumps({"attack": "pgd", "eps": eps, "steps": 10}))
        records += attack_rows("pgd", [0, 0], eps=0.5, seed=seed,
                               attack_config=json.dumps({"attack": "pgd", "eps": 0.5, "steps": 40}))
    attacks = report_markdown(frame(records)).split("### Attacks")[1].split("\n### ")[0]
    pgd = [line for line in attacks.splitlines() if line.startswith("| MNIST | pgd |")]
    assert pgd == ["| MNIST | pgd | 0, 0.1, 0.2 | steps=10 | – | 2 | 12 |", "| MNIST | pgd | 0.5 | steps=40 | – | 2 | 4 |"]


def test_every_accuracy_column_names_its_unit_and_clean_accuracy_is_named_apart():
    records = []
    for seed in (0, 1):
        records += attack_rows("pgd", [1, 1, seed, 0], seed=seed) + attack_rows("autoattack", [1, 0, 0, 0], seed=seed)
        records += attack_rows("rays", [1, 1, 1, 0], seed=seed, queries=100)
        records += attack_rows("cw_l2", [0, 1, 0, 0], norm="L2", eps=0.0, seed=seed)
    trials = pd.DataFrame([{"trial_id": f"er{s}1.0", "dataset": "mnist", "method": "er", "train_eps": 0.3,
                            "lam": 1.0, "clean_accuracy": 0.9, "wall_seconds": 120.0} for s in (0, 1)])
    text = report_markdown(frame(records), trials)
    checked = 0
    for header, rows in markdown_tables(text):
        for i, name in enumerate(header):
            if any(i < len(row) and ACCURACY_CELL.match(row[i]) for row in rows):
                assert "%" in name, (name, header)
                checked += 1
    assert checked >= 12  # the figure, Tables 1–3, worst case, per-configuration tables, trials
    # The evaluation subset's clean accuracy is never a bare "clean", and says which it is.
    assert all("clean" not in name or "evaluation subset" in name for header, _ in markdown_tables(text)
               for name in header)
    assert "`holdout_accuracy`" in text.split("## ")[0]  # the intro names Tune's other reading
