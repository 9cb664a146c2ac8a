"""The paper's numbers the report is laid out by and compared against: the attacks of its
tables and figures, the C&W bound of its Table 2, the published robust accuracies, and the
report's "Paper comparison" section.

Sources (accuracy in %, ℓ∞, robust = correct under the attack on the evaluated examples):

- The ER-Classifier paper, Table 1 (AutoAttack on 1,000 test examples at ε 0.3 / 0.03 / 0.03 /
  0.01 on MNIST / CIFAR10 / STL10 / Tiny ImageNet, 30 epochs) and Table 3 (RayS, 10,000
  queries, same examples and ε).
- Croce & Hein, "Reliable evaluation of adversarial robustness with an ensemble of diverse
  parameter-free attacks", ICML 2020, as listed in the AutoAttack repository's leaderboard
  (github.com/fra31/auto-attack, README.md at commit a392200, full test sets): Madry et al.
  2018's public models (MNIST ε 0.3: 88.50; CIFAR10 WRN-34-10 ε 8/255: 44.04) and TRADES
  (Zhang et al. 2019; MNIST ε 0.3: 92.81; CIFAR10 WRN-34-10 ε 0.031: 53.08). These are other
  architectures trained for far longer, so they bound what the method can reach, not what the
  paper's small networks reached.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from grid.store.rows import present

from .formatting import markdown_table, num

# Registry names of the attacks behind Table 1 (AutoAttack), Table 2 (C&W-ℓ2), Table 3 (RayS)
# and Figures 3/4 (PGD).
AUTOATTACK, CW_ATTACK, RAYS, PGD_ATTACK = "autoattack", "cw_l2", "rays", "pgd"
# Table 2 counts an MNIST example robust when C&W needs an RMS ℓ2 above this (ℓ2 / √pixels,
# images in [0, 1]); C&W itself is unbounded.
CW_RMS_BOUND = 0.005
ER_PAPER = "ER-Classifier paper"
AUTOATTACK_LEADERBOARD = "AutoAttack leaderboard (Croce & Hein 2020)"
# Our ε may be written differently from the source's (8/255 = 0.0314 vs 0.031 vs 0.03): a
# published value is compared with our rows within this distance in ε.
EPS_MATCH = 0.002


@dataclass(frozen=True)
class PaperValue:
    dataset: str
    method: str  # er_core.methods registry name
    attack: str
    eps: float
    accuracy: float  # percent
    source: str


PAPER_VALUES: tuple[PaperValue, ...] = (
    # ER-Classifier paper, Table 1: AutoAttack.
    PaperValue("mnist", "madry", AUTOATTACK, 0.3, 69.0, ER_PAPER + ", Table 1"),
    PaperValue("cifar10", "madry", AUTOATTACK, 0.03, 35.6, ER_PAPER + ", Table 1"),
    PaperValue("stl10", "madry", AUTOATTACK, 0.03, 21.0, ER_PAPER + ", Table 1"),
    PaperValue("tiny_imagenet", "madry", AUTOATTACK, 0.01, 9.70, ER_PAPER + ", Table 1"),
    PaperValue("mnist", "er", AUTOATTACK, 0.3, 79.0, ER_PAPER + ", Table 1"),
    PaperValue("cifar10", "er", AUTOATTACK, 0.03, 47.2, ER_PAPER + ", Table 1"),
    PaperValue("stl10", "er", AUTOATTACK, 0.03, 25.3, ER_PAPER + ", Table 1"),
    PaperValue("tiny_imagenet", "er", AUTOATTACK, 0.01, 11.1, ER_PAPER + ", Table 1"),
    # ER-Classifier paper, Table 3: RayS (ER-Classifier only).
    PaperValue("mnist", "er", RAYS, 0.3, 75.8, ER_PAPER + ", Table 3"),
    PaperValue("cifar10", "er", RAYS, 0.03, 51.0, ER_PAPER + ", Table 3"),
    PaperValue("stl10", "er", RAYS, 0.03, 34.4, ER_PAPER + ", Table 3"),
    PaperValue("tiny_imagenet", "er", RAYS, 0.01, 21.7, ER_PAPER + ", Table 3"),
)

PUBLISHED_VALUES: tuple[PaperValue, ...] = (
    PaperValue("mnist", "madry", AUTOATTACK, 0.3, 88.50, AUTOATTACK_LEADERBOARD),
    PaperValue("mnist", "trades", AUTOATTACK, 0.3, 92.81, AUTOATTACK_LEADERBOARD),
    PaperValue("cifar10", "madry", AUTOATTACK, 8 / 255, 44.04, AUTOATTACK_LEADERBOARD),
    PaperValue("cifar10", "trades", AUTOATTACK, 0.031, 53.08, AUTOATTACK_LEADERBOARD),
)


def lookup(values: tuple[PaperValue, ...], dataset: str, method: str, attack: str,
           eps: float) -> Optional[PaperValue]:
    """The published value for (dataset, method, attack) at ε (within :data:`EPS_MATCH`), if any."""
    for v in values:
        if (v.dataset, v.method, v.attack) == (dataset, method, attack) and abs(v.eps - eps) <= EPS_MATCH:
            return v
    return None


def paper_eps(dataset: str) -> Optional[float]:
    """The ε of the paper's Tables 1 and 3 for ``dataset`` (None where the paper has none)."""
    found = {v.eps for v in PAPER_VALUES if v.dataset == dataset}
    return found.pop() if len(found) == 1 else None


def comparison_rows(acc) -> list[dict]:
    """One row per (dataset, configuration) with our AutoAttack / RayS accuracy beside the published ones.

    acc: :func:`grid.report.metrics.robust_accuracy` rows (columns dataset, method, train_eps, lam,
    attack, eps, robust_accuracy, runs). For each configuration the ε is the paper's ε for the
    dataset if it ran there, else the largest ε it ran AutoAttack or RayS at.
    """
    rows = []
    mine = acc[acc["attack"].isin([AUTOATTACK, RAYS])]
    for (dataset, method, train_eps, lam), g in mine.groupby(["dataset", "method", "train_eps", "lam"],
                                                              dropna=False, sort=True):
        target = paper_eps(dataset)
        eps_values = sorted(g["eps"].unique())
        eps = next((e for e in eps_values if target is not None and abs(e - target) <= EPS_MATCH), eps_values[-1])
        at = g[(g["eps"] - eps).abs() <= 1e-12]
        ours = {a: float(at.loc[at["attack"] == a, "robust_accuracy"].iloc[0]) * 100
                for a in (AUTOATTACK, RAYS) if (at["attack"] == a).any()}
        rows.append({
            "dataset": dataset, "method": method, "train_eps": train_eps, "lam": lam, "eps": eps,
            "runs": int(at["runs"].max()),
            "ours_autoattack": ours.get(AUTOATTACK), "paper_autoattack": _value(PAPER_VALUES, dataset, method, AUTOATTACK, eps),
            "ours_rays": ours.get(RAYS), "paper_rays": _value(PAPER_VALUES, dataset, method, RAYS, eps),
            "published_autoattack": _value(PUBLISHED_VALUES, dataset, method, AUTOATTACK, eps),
        })
    return rows


def _value(values, dataset, method, attack, eps) -> Optional[float]:
    found = lookup(values, dataset, method, attack, eps)
    return None if found is None else found.accuracy


def paper_comparison_section(acc) -> list[str]:
    """Markdown lines of the report's "Paper comparison" section (Δ = ours − published, in points)."""
    out = ["## Paper comparison", "",
           "Robust accuracy in % (mean over runs) beside the ER-Classifier paper's AutoAttack (T1) and "
           "RayS (T3) tables and the AutoAttack leaderboard's Madry/TRADES models (Croce & Hein 2020; "
           "other architectures, full test sets). Δ = ours − published, in points; sources in "
           "`grid/paper_values.py`.", ""]
    rows = comparison_rows(acc) if not acc.empty else []
    if not rows:
        return out + ["_no autoattack or rays rows_", ""]
    header = ["dataset", "method", "ε", "runs", "AutoAttack", "paper T1", "Δ", "RayS", "paper T3", "Δ",
              "AA leaderboard", "Δ"]
    lines = []
    for r in rows:
        label = r["method"] + "".join(f", {k} {num(r[c])}" for k, c in (("λ", "lam"), ("train ε", "train_eps"))
                                      if present(r[c]))
        cells = [r["dataset"], label, num(r["eps"]), str(r["runs"])]
        for ours, theirs in (("ours_autoattack", "paper_autoattack"), ("ours_rays", "paper_rays"),
                             (None, "published_autoattack")):
            mine = r["ours_autoattack"] if ours is None else r[ours]
            if ours is not None:
                cells.append(_pct(mine))
            cells += [_pct(r[theirs]), _delta(mine, r[theirs])]
        lines.append(cells)
    return out + [markdown_table(header, lines), ""]


def _pct(value) -> str:
    return f"{value:.1f}" if present(value) else "–"


def _delta(ours, theirs) -> str:
    return f"{ours - theirs:+.1f}" if present(ours) and present(theirs) else "–"
