"""The paper's detection Tables 5–8 as markdown, from the detection rows of the store.

``detection_tables(det_df)`` takes the DataFrame of ``grid.store.load_detection`` and
returns markdown: Table 5 (familiar attack: fitted and tested on the same attack) and one
cross-attack table per fit attack (the paper's Table 6: fitted on FGSM, 7: PGD, 8: C&W),
tested on every other attack, in that order (5, 6, 7, 8). Rows are dataset × criterion, columns test attack × detector,
values in percent as the paper prints them.

Trials that differ only in seed are averaged (mean ± std over seeds, "n=" runs given when
more than one); trials of different configurations (method, λ, training ε) are never averaged:
where one detector ran on several configurations of a dataset, its column label names them,
e.g. ``er1 [er λ=10]``.
"""

from __future__ import annotations

import pandas as pd

from grid.store.rows import present

from .formatting import markdown_table, num

CRITERIA_LABELS = {"acc_adv": "ACC-ADV", "acc_nadv": "ACC-NADV", "acc_cla": "ACC-CLA", "acc_com": "ACC-COM"}
PAPER_CRITERIA = ("acc_nadv", "acc_com")  # what Tables 5–8 print
DETECTOR_ORDER = ("kd", "lid", "er1", "er2")
ATTACK_ORDER = ("pgd", "fgsm", "cw_l2")  # Table 5's column order
ATTACK_LABELS = {"pgd": "PGD", "fgsm": "FGSM", "cw_l2": "C&W"}
CROSS_TABLE_NUMBER = {"fgsm": 6, "pgd": 7, "cw_l2": 8}
UNNUMBERED = 9  # a fit attack the paper has no table for sorts after Table 8
CONFIG_COLUMNS = ("method", "train_eps", "lam")


def detection_tables(det_df, criteria=PAPER_CRITERIA) -> str:
    """Markdown Tables 5–8 from detection rows ('' for None or an empty frame).

    ``criteria``: which of acc_adv, acc_nadv, acc_cla, acc_com to print (default: the paper's
    ACC-NADV and ACC-COM).
    """
    if det_df is None or len(det_df) == 0:
        return ""
    unknown = [c for c in criteria if c not in CRITERIA_LABELS]
    if unknown:
        raise ValueError(f"criteria: unknown {unknown}; valid: {', '.join(CRITERIA_LABELS)}")
    df = _labelled(det_df)
    parts = []
    familiar = df[df["fit_attack"] == df["test_attack"]]
    if len(familiar):
        parts.append(_table(
            "Table 5. Detectors fitted and tested on the same attack (familiar adversary), %.",
            familiar, criteria))
    # The cross-attack tables in the paper's numbering (6 FGSM, 7 PGD, 8 C&W), not in Table 5's
    # column order (PGD first), which printed them 7, 6, 8; unnumbered fit attacks follow.
    fit_attacks = sorted(df["fit_attack"].unique(), key=lambda a: (CROSS_TABLE_NUMBER.get(a, UNNUMBERED), a))
    for fit in fit_attacks:
        cross = df[(df["fit_attack"] == fit) & (df["test_attack"] != fit)]
        if not len(cross):
            continue
        number = CROSS_TABLE_NUMBER.get(fit)
        title = f"Table {number}." if number else "Cross-attack table."
        parts.append(_table(
            f"{title} Fitted on {ATTACK_LABELS.get(fit, fit)} adversarial examples, tested on the others, %.",
            cross, criteria))
    return "\n\n".join(parts) + "\n"


def _labelled(det_df) -> pd.DataFrame:
    """Adds ``column``: the detector, plus its configuration where a dataset has several."""
    df = det_df.copy()
    keys = df[["dataset", "detector", *CONFIG_COLUMNS]].astype(str).drop_duplicates()
    ambiguous = set(keys.groupby(["dataset", "detector"]).size().loc[lambda s: s > 1].index)

    def label(row) -> str:
        if (row["dataset"], row["detector"]) not in ambiguous:
            return row["detector"]
        extra = [str(row["method"])]
        if present(row["lam"]):
            extra.append(f"λ={num(row['lam'])}")
        if present(row["train_eps"]):
            extra.append(f"ε={num(row['train_eps'])}")
        return f"{row['detector']} [{' '.join(extra)}]"

    df["column"] = df.apply(label, axis=1)
    return df


def _ordered(values, order) -> list:
    values = list(values)
    return [v for v in order if v in values] + sorted(v for v in values if v not in order)


def _cell(values: pd.Series) -> str:
    values = values.dropna() * 100
    if values.empty:
        return "–"
    if len(values) == 1:
        return f"{values.iloc[0]:.2f}"
    return f"{values.mean():.2f} ± {values.std(ddof=1):.2f} (n={len(values)})"


def _table(title: str, df: pd.DataFrame, criteria) -> str:
    tests = _ordered(df["test_attack"].unique(), ATTACK_ORDER)
    columns = sorted(df["column"].unique(), key=lambda c: (_rank(c), c))
    header = ["Data", "Metric"] + [f"{ATTACK_LABELS.get(t, t)} {c}" for t in tests for c in columns]
    rows = []
    for dataset in sorted(df["dataset"].unique()):
        sub = df[df["dataset"] == dataset]
        for criterion in criteria:
            cells = [dataset, CRITERIA_LABELS[criterion]]
            for t in tests:
                for c in columns:
                    cells.append(_cell(sub[(sub["test_attack"] == t) & (sub["column"] == c)][criterion]))
            rows.append(cells)
    return f"**{title}**\n\n" + markdown_table(header, rows, rule="---")


def _rank(column: str) -> int:
    base = column.split(" ")[0]
    return DETECTOR_ORDER.index(base) if base in DETECTOR_ORDER else len(DETECTOR_ORDER)
