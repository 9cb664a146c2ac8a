"""The paper's numbers the report is laid out by and compared against: the attacks of its
tables and figures, the C&W bound of its Table 2 and its two readings, the published robust
accuracies, the report's "Paper comparison" section and the rule that says which reading of the
bound the paper's Table 2 fits (:func:`cw_reading_fit`).

Sources (accuracy in %, ℓ∞ unless said, robust = correct under the attack on the evaluated examples):

- The ER-Classifier paper, Table 1 (AutoAttack on 1,000 test examples at ε 0.3 / 0.03 / 0.03 /
  0.01 on MNIST / CIFAR10 / STL10 / Tiny ImageNet, 30 epochs), Table 2 (C&W-ℓ2 on MNIST at
  "ℓ2 < 0.005", with the C&W settings of Athalye et al.'s Defense-GAN evaluation: Defense-GAN
  55.0, ER-Classifier 99.1) and Table 3 (RayS, 10,000 queries, same examples and ε).
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

from .formatting import cell_interval, markdown_table, num

# Registry names of the attacks behind Table 1 (AutoAttack), Table 2 (C&W-ℓ2), Table 3 (RayS)
# and Figures 3/4 (PGD).
AUTOATTACK, CW_ATTACK, RAYS, PGD_ATTACK = "autoattack", "cw_l2", "rays", "pgd"
# Table 2's bound "ℓ2 < 0.005" (images in [0, 1]; C&W itself is unbounded) does not say what the
# ℓ2 is divided by, so the report reads it both ways, N being the number of input values (784
# on MNIST):
# - RMS, ℓ2/√N ≤ 0.005 (ℓ2 ≤ 0.14 on MNIST): the form er_core stores as ``l2_rms`` and the
#   detection protocol bounds C&W with; how the report read Table 2 first.
CW_RMS_BOUND = 0.005
# - per value, ℓ2/N ≤ 0.005 (ℓ2 ≤ 3.92 on MNIST): the paper evaluates with the settings of the
#   Defense-GAN evaluation (Athalye et al. 2018, obfuscated-gradients, defensegan/attack.ipynb),
#   whose printed adversarial example has ℓ2 = 3.10, i.e. 0.0040 per value but 0.11 RMS; only
#   this reading lets that evaluation's examples count against Defense-GAN's 55%.
CW_PER_VALUE_BOUND = 0.005
# The method whose bounded C&W accuracy decides which reading can be behind Defense-GAN's
# Table 2 number (cw_reading_fit): the undefended classifier, assumed no more robust than any defence.
UNDEFENDED, DEFENSE_GAN = "none", "defense_gan"
# Methods the paper reports but the grid does not run (no er_core registry entry), by display name.
PAPER_ONLY_METHODS = {DEFENSE_GAN: "Defense-GAN"}
ER_PAPER = "ER-Classifier paper"
AUTOATTACK_LEADERBOARD = "AutoAttack leaderboard (Croce & Hein 2020)"
# Our ε may be written differently from the source's (8/255 = 0.0314 vs 0.031 vs 0.03): a
# published value is compared with our rows within this distance in ε.
EPS_MATCH = 0.002


@dataclass(frozen=True)
class CWReading:
    """One reading of a C&W ℓ2 bound: an example the attack fooled still counts robust when its
    stored ``column`` (divided by the dataset's number of input values N where ``per_value``)
    exceeds ``bound``. ``key`` names the reading in frames, ``symbol`` in headers."""

    key: str
    symbol: str
    bound: float
    column: str  # a column of grid.store.ROW_SCHEMA
    per_value: bool

    def header(self) -> str:
        return f"{self.symbol} ≤ {self.bound:g}"


CW_RMS = CWReading("rms", "ℓ2/√N", CW_RMS_BOUND, "l2_rms", per_value=False)
CW_PER_VALUE = CWReading("per_value", "ℓ2/N", CW_PER_VALUE_BOUND, "l2", per_value=True)
CW_READINGS: tuple[CWReading, ...] = (CW_RMS, CW_PER_VALUE)


@dataclass(frozen=True)
class PaperValue:
    dataset: str
    method: str  # er_core.methods registry name, or a key of PAPER_ONLY_METHODS
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
    # ER-Classifier paper, Table 2: C&W-ℓ2 on MNIST. C&W has no ε: ``eps`` holds the bound 0.005,
    # whose reading the paper leaves open (CW_READINGS).
    PaperValue("mnist", DEFENSE_GAN, CW_ATTACK, 0.005, 55.0, ER_PAPER + ", Table 2"),
    PaperValue("mnist", "er", CW_ATTACK, 0.005, 99.1, ER_PAPER + ", Table 2"),
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
    found = {v.eps for v in PAPER_VALUES if v.dataset == dataset and v.attack in (AUTOATTACK, RAYS)}
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
        intervals = {a: _interval_pct(at[at["attack"] == a].iloc[0]) for a in (AUTOATTACK, RAYS)
                     if (at["attack"] == a).any()}
        rows.append({
            "dataset": dataset, "method": method, "train_eps": train_eps, "lam": lam, "eps": eps,
            "runs": int(at["runs"].max()),
            "ours_autoattack": ours.get(AUTOATTACK), "paper_autoattack": _value(PAPER_VALUES, dataset, method, AUTOATTACK, eps),
            "ours_rays": ours.get(RAYS), "paper_rays": _value(PAPER_VALUES, dataset, method, RAYS, eps),
            "published_autoattack": _value(PUBLISHED_VALUES, dataset, method, AUTOATTACK, eps),
            "ci_autoattack": intervals.get(AUTOATTACK), "ci_rays": intervals.get(RAYS),
        })
    return rows


def _interval_pct(row):
    """The 95% interval a cell shows (over seeds where several runs, else over examples), in %;
    None where the accuracy table carries none."""
    interval = cell_interval(row)
    return None if interval is None else (100 * float(interval[0]), 100 * float(interval[1]))


def _value(values, dataset, method, attack, eps) -> Optional[float]:
    found = lookup(values, dataset, method, attack, eps)
    return None if found is None else found.accuracy


def compared_datasets(attacks: tuple[str, ...]) -> list[str]:
    """Datasets with a published value (the paper's or the leaderboard's) under one of ``attacks``."""
    return list(dict.fromkeys(v.dataset for v in (*PAPER_VALUES, *PUBLISHED_VALUES) if v.attack in attacks))


def paper_comparison_section(acc, cw_acc=None, readings: tuple[CWReading, ...] = CW_READINGS) -> list[str]:
    """Markdown lines of the report's "Paper comparison" section (Δ = ours − published, in points).

    acc: :func:`grid.report.metrics.robust_accuracy` rows (Tables 1 and 3); cw_acc:
    :func:`grid.report.tables.cw_accuracy` rows (Table 2, both readings of its bound), or None.
    Only datasets with published numbers get a table; the others are named in one line, and
    the section is left out when the rows hold none of the compared attacks.
    """
    rows = comparison_rows(acc) if not acc.empty else []
    has_cw = cw_acc is not None and not cw_acc.empty
    if not rows and not has_cw:
        return []  # no AutoAttack, RayS or C&W rows: the report's opening line says so
    published = compared_datasets((AUTOATTACK, RAYS))
    shown = [r for r in rows if r["dataset"] in published]
    cw_shown = has_cw and bool(set(cw_acc["dataset"]) & set(compared_datasets((CW_ATTACK,))))
    out = ["## Paper comparison", ""]
    if shown or cw_shown:
        out += ["Robust accuracy in % (mean over runs) beside the ER-Classifier paper's AutoAttack (T1), "
                "C&W (T2) and RayS (T3) tables and the AutoAttack leaderboard's Madry/TRADES models (Croce & "
                "Hein 2020; other architectures, full test sets). Δ = ours − published, in points, marked *not "
                "resolved* where the published value lies inside our 95% interval; sources in "
                "`grid/report/paper_values.py`.", ""]
    if shown:
        header = ["dataset", "method", "ε", "runs", "AutoAttack (%)", "paper T1 (%)", "Δ (points)", "RayS (%)",
                  "paper T3 (%)", "Δ (points)", "AA leaderboard (%)", "Δ (points)"]
        lines = []
        for r in shown:
            cells = [r["dataset"], _config_label(r), num(r["eps"]), str(r["runs"])]
            for ours, theirs in (("ours_autoattack", "paper_autoattack"), ("ours_rays", "paper_rays"),
                                 (None, "published_autoattack")):
                mine = r["ours_autoattack"] if ours is None else r[ours]
                ci = r.get("ci_autoattack" if ours in (None, "ours_autoattack") else "ci_rays")
                if ours is not None:
                    cells.append(_pct(mine))
                cells += [_pct(r[theirs]), _delta(mine, r[theirs], ci)]
            lines.append(cells)
        out += [markdown_table(header, lines), ""]
    unpublished = sorted({r["dataset"] for r in rows} - set(published)
                         | (set(cw_acc["dataset"]) - set(compared_datasets((CW_ATTACK,))) if has_cw else set()))
    if unpublished:
        out += [f"No published numbers for {', '.join(unpublished)}: the paper and the AutoAttack leaderboard "
                f"report {', '.join(compared_datasets((AUTOATTACK, RAYS, CW_ATTACK)))} only.", ""]
    return out + (cw_comparison_lines(cw_acc, readings) if cw_shown else [])


def cw_comparison_rows(cw_acc, readings: tuple[CWReading, ...] = CW_READINGS) -> list[dict]:
    """Table 2 beside ours: one row per measured (dataset, configuration, C&W setting) on a dataset
    of the paper's Table 2, with our accuracy in % under each reading (``ours_<reading key>``) and
    the paper's value (``paper``), then one row per Table 2 value of a measured dataset that no
    measured row stands beside (Defense-GAN, which the grid does not run; ``runs`` None)."""
    rows, matched = [], set()
    measured = set() if cw_acc is None or cw_acc.empty else set(cw_acc["dataset"])
    in_table2 = set(compared_datasets((CW_ATTACK,)))
    if measured:
        keys = ["dataset", "method", "train_eps", "lam", "cw_setting"]
        for (dataset, method, train_eps, lam, setting), g in cw_acc.groupby(keys, dropna=False, sort=True):
            if dataset not in in_table2:
                continue
            paper = _cw_paper_value(dataset, method)
            matched.add(paper)
            rows.append({"dataset": dataset, "method": method, "train_eps": train_eps, "lam": lam,
                         "cw_setting": setting, "runs": int(g["runs"].max()),
                         **{f"ours_{r.key}": _reading_pct(g, r) for r in readings},
                         "paper": None if paper is None else paper.accuracy})
    for v in PAPER_VALUES:
        if v.attack == CW_ATTACK and v not in matched and v.dataset in measured:
            rows.append({"dataset": v.dataset, "method": v.method, "train_eps": None, "lam": None,
                         "cw_setting": None, "runs": None, **{f"ours_{r.key}": None for r in readings},
                         "paper": v.accuracy})
    return rows


def cw_comparison_lines(cw_acc, readings: tuple[CWReading, ...] = CW_READINGS) -> list[str]:
    """The Table 2 part of the comparison section (see :func:`cw_comparison_rows`)."""
    header = ["dataset", "method", "C&W setting", "runs"]
    for r in readings:
        header += [f"C&W {r.header()} (%)", "Δ (points)"]
    lines = []
    for row in cw_comparison_rows(cw_acc, readings):
        measured = row["runs"] is not None
        cells = [row["dataset"], _config_label(row), (row["cw_setting"] or "default") if measured else "–",
                 str(row["runs"]) if measured else "–"]
        for r in readings:
            cells += [_pct(row[f"ours_{r.key}"]), _delta(row[f"ours_{r.key}"], row["paper"])]
        lines.append(cells + [_pct(row["paper"])])
    return ["C&W-ℓ2 beside the paper's Table 2 (its bound 0.005 read as RMS ℓ2/√N and as ℓ2/N, N = input "
            "values; a method the grid does not run has no numbers of ours):", "",
            markdown_table(header + ["paper T2 (%)"], lines), ""]


def cw_reading_fit(cw_acc, readings: tuple[CWReading, ...] = CW_READINGS) -> list[str]:
    """Markdown lines: which reading of Table 2's bound Defense-GAN's number fits, by our rows.

    Rule: a reading can be the one behind Defense-GAN's Table 2 accuracy only if, under it, the
    undefended model (:data:`UNDEFENDED`) scores at most that accuracy, i.e. C&W within the bound
    fools at least the share of an undefended classifier's examples that the paper says it fooled
    of Defense-GAN (an undefended classifier assumed no more robust than a defence). A reading
    under which the undefended model stays above it, near its clean accuracy say, cannot be.
    Nothing is decided where the rows hold no undefended model, or where its clean accuracy is
    itself at most Defense-GAN's number (every reading would pass).
    """
    out = []
    for paper in (v for v in PAPER_VALUES if v.attack == CW_ATTACK and v.method == DEFENSE_GAN):
        mine = None if cw_acc is None or cw_acc.empty else cw_acc[
            (cw_acc["dataset"] == paper.dataset) & (cw_acc["method"] == UNDEFENDED)]
        title = (f"Which reading of the bound fits {PAPER_ONLY_METHODS[DEFENSE_GAN]}'s {paper.accuracy:.1f} % "
                 f"({paper.source}, {paper.dataset}): a reading fits only if under it the undefended model "
                 f"(`{UNDEFENDED}`), assumed no more robust than a defence, scores at most {paper.accuracy:.1f} %; "
                 "one under which it keeps more cannot be the reading behind that number.")
        if mine is None or mine.empty:
            out += [title, "", f"- no `{UNDEFENDED}` C&W rows on {paper.dataset}: not decided", ""]
            continue
        out += [title, ""]
        for setting, g in mine.groupby("cw_setting", sort=True):
            out += _fit_lines(g, setting, paper, readings)
        out.append("")
    return out


def _fit_lines(g, setting: str, paper: PaperValue, readings: tuple[CWReading, ...]) -> list[str]:
    """The verdict of one C&W setting's undefended rows ``g`` (one row per reading)."""
    where = f"C&W setting {setting or 'default'}"
    clean = float(g["clean_accuracy"].iloc[0]) * 100
    if round(clean, 1) <= paper.accuracy:
        return [f"- {where}: the undefended model's clean accuracy {clean:.1f} % is itself at most "
                f"{paper.accuracy:.1f} %: not decided"]
    lines, fits = [], []
    for r in readings:
        ours = _reading_pct(g, r)
        if ours is None:
            continue
        fit = round(ours, 1) <= paper.accuracy  # judged as printed (0.1 point), as the reader sees it
        if fit:
            fits.append(r.header())
        verdict = "fits" if fit else f"cannot be the reading behind {paper.accuracy:.1f} %"
        lines.append(f"- {where}, {r.header()}: undefended {ours:.1f} % (clean {clean:.1f} %, "
                     f"{int(g['runs'].max())} run(s)): {verdict}")
    if len(fits) == 1:
        summary = f"only {fits[0]} fits"
    elif fits:
        summary = "every reading fits: the rows do not tell them apart"
    else:
        summary = "no reading fits: under each, C&W fools fewer undefended examples than the paper's number needs"
    return lines + [f"- {where}: {summary}"]


def _cw_paper_value(dataset: str, method: str) -> Optional[PaperValue]:
    """The paper's Table 2 value of ``method`` on ``dataset`` (its ``eps`` is the bound, not an ε)."""
    return next((v for v in PAPER_VALUES if (v.dataset, v.method, v.attack) == (dataset, method, CW_ATTACK)), None)


def _reading_pct(g, reading: CWReading) -> Optional[float]:
    at = g[g["reading"] == reading.key]
    return float(at["robust_accuracy"].iloc[0]) * 100 if len(at) else None


def _config_label(r: dict) -> str:
    name = PAPER_ONLY_METHODS.get(r["method"])
    if name is not None:
        return f"{name} (not run here)"
    return r["method"] + "".join(f", {k} {num(r[c])}" for k, c in (("λ", "lam"), ("train ε", "train_eps"))
                                 if present(r[c]))


def _pct(value) -> str:
    return f"{value:.1f}" if present(value) else "–"


def _delta(ours, theirs, interval=None) -> str:
    """Ours − published in points; marked "not resolved" where the published value lies inside our
    95% interval (``interval``, in %): the measurement cannot tell the two apart."""
    if not (present(ours) and present(theirs)):
        return "–"
    if interval is not None and interval[0] <= theirs <= interval[1]:
        return f"{ours - theirs:+.1f} (not resolved)"
    return f"{ours - theirs:+.1f}"
