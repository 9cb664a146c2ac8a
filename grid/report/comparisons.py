"""The paper's method-vs-method claims, measured: each pair of configurations on the same
evaluation examples, with the paired difference's 95% interval, "not resolved" where it
includes 0 (:mod:`grid.report.intervals`).

Pairs are the paper's comparisons (:data:`PAIRS`: each ER variant against the baseline it
extends), at the dataset's paper ε (else the largest ε both ran), for every attack both ran and
the per-example worst case. Per seed both ran, the difference of robust shares on the examples
both evaluated; over several seeds, the t interval of those per-seed differences.
"""

from __future__ import annotations

import pandas as pd

from .formatting import markdown_table, num
from .intervals import paired_difference, resolved, t_interval
from .metrics import with_worst_case
from .names import method_name
from .paper_values import EPS_MATCH, paper_eps

#: (method, the baseline it is compared with): ER-Classifier against Madry's adversarial
#: training, ER− against E-CLA (the same encoder without the regulariser), ER-TRADES against TRADES.
PAIRS = (("er", "madry"), ("er_minus", "e_cla"), ("er_trades", "trades"))
CONFIG = ("method", "train_eps", "lam")
COLUMNS = ["dataset", "attack", "norm", "eps", "a", "b", "seeds", "n", "difference", "low", "high", "resolved"]


def _label(row) -> str:
    parts = [method_name(row["method"])]
    if pd.notna(row["lam"]):
        parts.append(f"λ {num(row['lam'])}")
    if pd.notna(row["train_eps"]):
        parts.append(f"ε_train {num(row['train_eps'])}")
    return " ".join(parts)


def comparison_table(df: pd.DataFrame, pairs=PAIRS) -> pd.DataFrame:
    """One row per (pair of configurations, dataset, attack, threat model, ε): ``difference`` = a − b
    in robust accuracy with its 95% interval ``low``/``high``, ``seeds`` and ``n`` behind it."""
    if df.empty:
        return pd.DataFrame(columns=COLUMNS)
    d = with_worst_case(df)
    d = d.assign(_robust=d["correct_clean"].astype(bool) & d["correct_adv"].astype(bool))
    rows = []
    for dataset, per_dataset in d.groupby("dataset", sort=True):
        target = paper_eps(dataset)
        configs = per_dataset[list(CONFIG)].drop_duplicates()
        for a_method, b_method in pairs:
            for _, a in configs[configs["method"] == a_method].iterrows():
                for _, b in configs[configs["method"] == b_method].iterrows():
                    rows += _pair_rows(per_dataset, dataset, a, b, target)
    return pd.DataFrame(rows, columns=COLUMNS)


def _of(df: pd.DataFrame, config) -> pd.DataFrame:
    mask = pd.Series(True, index=df.index)
    for column in CONFIG:
        mask &= df[column].isna() if pd.isna(config[column]) else (df[column] == config[column])
    return df[mask]


def _pair_rows(df, dataset, a, b, target) -> list[dict]:
    mine, theirs = _of(df, a), _of(df, b)
    out = []
    for (attack, norm), g in mine.groupby(["attack", "norm"], sort=True):
        other = theirs[(theirs["attack"] == attack) & (theirs["norm"] == norm)]
        common = sorted(set(g["eps"]) & set(other["eps"]))
        if not common:
            continue
        eps = next((e for e in common if target is not None and abs(e - target) <= EPS_MATCH), common[-1])
        here, there = g[g["eps"] == eps], other[other["eps"] == eps]
        differences, low, high, n = [], float("nan"), float("nan"), 0
        for seed in sorted(set(here["seed"]) & set(there["seed"])):
            x, y = here[here["seed"] == seed], there[there["seed"] == seed]
            shared = set(x["sample_idx"]) & set(y["sample_idx"])
            d, low, high = paired_difference(set(x.loc[x["_robust"], "sample_idx"]), set(y.loc[y["_robust"], "sample_idx"]),
                                             shared)
            differences.append(d)
            n += len(shared)
        if not differences:
            continue
        if len(differences) > 1:
            low, high = t_interval(differences)
        mean = sum(differences) / len(differences)
        out.append({"dataset": dataset, "attack": attack, "norm": norm, "eps": float(eps), "a": _label(a),
                    "b": _label(b), "seeds": len(differences), "n": n, "difference": mean, "low": low, "high": high,
                    "resolved": resolved(low, high)})
    return out


def comparison_section(df: pd.DataFrame) -> list[str]:
    """The report's "Method comparisons" section."""
    table = comparison_table(df)
    out = ["## Method comparisons (paired)", "",
           "The paper's comparisons on the same evaluation examples: Δ = first − second in robust accuracy (points) "
           "with its 95% interval (per seed from the discordant examples; over seeds, the t interval of the per-seed "
           "differences). *not resolved*: the interval includes 0, so this measurement does not tell the two apart.", ""]
    if table.empty:
        return out + ["_no pair of compared methods in the rows_", ""]
    lines = [[r.dataset, f"{r.a} vs {r.b}", r.attack, num(r.eps), str(r.seeds), str(r.n),
              f"{100 * r.difference:+.1f} ({100 * r.low:+.1f} to {100 * r.high:+.1f})",
              "resolved" if r.resolved else "not resolved"] for r in table.itertuples(index=False)]
    return out + [markdown_table(["dataset", "comparison", "attack", "ε", "seeds", "n", "Δ, points (95% interval)", ""], lines), ""]


__all__ = ["PAIRS", "comparison_section", "comparison_table"]
