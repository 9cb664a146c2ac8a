"""The markdown report: the paper's tables and figures, then the settings behind every number.

:func:`report_markdown` runs the builders of :data:`SECTIONS` in order; each takes the shared
:class:`ReportContext` (rows, trial rows, detection rows, the accuracy table computed once,
links to the figure files, the sanity flags) and returns markdown lines. To add a section,
write ``def my_section(ctx) -> list[str]`` and insert it into :data:`SECTIONS` before
:func:`grid.report.settings.settings_section`, which closes the report. Cells are accuracy in % as
``mean ± std (95% interval) [n=examples × seeds]`` and every accuracy column's header says ``(%)``
(``er-grid query`` and its CSV give the same numbers as fractions); a cell computed from fewer
examples than the evaluation plan asked for says ``n=… of …: incomplete``. A paper table or figure
whose attack has no rows is left out, and one line at the top names it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from types import SimpleNamespace
from pathlib import Path
from typing import Callable, Optional

import pandas as pd

from grid.store.flags import flags_from_frames, not_checked_frame
from grid.store.rows import present

from .comparisons import comparison_section
from .detection_tables import detection_tables as detection_table_text
from .formatting import PCT, frame_markdown, markdown_table, mean_std, num
from .metrics import ACC_BY, CONFIG_COLUMNS, WORST_CASE, robust_accuracy
from .names import dataset_name, method_name
from .paper_values import (
    AUTOATTACK, CW_ATTACK, CW_READINGS, PGD_ATTACK, RAYS, CWReading, cw_reading_fit, paper_comparison_section,
    paper_eps,
)
from .query import WITHOUT_RESULTS, no_results_section
from .sanity import headline_rows, sanity_section
from .selection import chosen_lambdas, headline_lambdas, selection_section
from .settings import settings_section
from .tables import (
    FIGURE4_METHODS, attack_table, config_labels, cw_accuracy, cw_table, figure_table, pgd_curves, settings_table,
    worst_case_attacks, worst_case_table,
)


@dataclass
class ReportContext:
    """What every section builder may use. ``figures``: paths of written figure files (any
    format; PNG are linked), ``links_from``: the folder the markdown file is written to (links
    are relative to it), ``None`` for links as given."""

    df: pd.DataFrame
    trials_df: Optional[pd.DataFrame] = None
    det_df: Optional[pd.DataFrame] = None
    cw_readings: tuple = CW_READINGS  # the readings of Table 2's bound (grid.report.paper_values)
    figures: list = field(default_factory=list)
    links_from: Optional[Path] = None
    acc: Optional[pd.DataFrame] = None
    flags: Optional[pd.DataFrame] = None  # sanity flags per trial (grid.stages.sanity)
    cw_acc: Optional[pd.DataFrame] = None  # Table 2's accuracies (grid.report.tables.cw_accuracy)
    notes_df: Optional[pd.DataFrame] = None  # attacks' notes per batch (grid.store.load_notes), or None
    selection: list = field(default_factory=list)  # the λ-selection section's lines (grid.report.selection)


Section = Callable[[ReportContext], list]  # a section builder: context → markdown lines


def report_markdown(df: pd.DataFrame, trials_df: Optional[pd.DataFrame] = None, det_df: Optional[pd.DataFrame] = None,
                    cw_readings: tuple[CWReading, ...] = CW_READINGS, figures: Optional[list] = None,
                    links_from: Optional[Path] = None, sections: Optional[list[Section]] = None,
                    flags: Optional[pd.DataFrame] = None, notes_df: Optional[pd.DataFrame] = None) -> str:
    """The paper's results as markdown: Figures 3–6, Tables 1–3, worst case, trials, detection, settings.

    df: example rows; trials_df: trial rows (``grid.store.load_trials``) or None; det_df:
    detection rows for Tables 5–8 or None; figures: figure files to link (``grid.report.figures``);
    sections: builders to run instead of :data:`SECTIONS`; notes_df: the attacks' notes
    (``grid.store.load_notes``) for the flags that read them, or None. Tables 1–3 and the worst case are in
    the paper's layout (methods down, datasets across), each followed by the same numbers per
    configuration with clean accuracy; an attack with no rows gives a note, not a table.
    """
    # Planned trials with no rows at all, named at the top: no table cell can mark them incomplete.
    without_results = no_results_section(df.attrs.get(WITHOUT_RESULTS, ()))
    # Sanity flags first; collapsed trials are kept out of every table below (grid.stages.sanity).
    # ``flags``: already computed by the caller (grid.report.export shares them with the figures).
    if flags is None:
        flags = flags_from_frames(df, trials_df, notes_df)
    df, trials_df = headline_rows(df, flags), (None if trials_df is None else headline_rows(trials_df, flags))
    # The accuracy table (with the worst case) is computed once and shared: on a full grid
    # this is the slow step. λ chosen on validation: the headline sections see only the chosen
    # λ, the selection section every λ (grid.report.selection).
    acc = robust_accuracy(df, by=ACC_BY)
    choice = chosen_lambdas(trials_df)
    selection = selection_section(choice, trials_df, acc, paper_eps)
    ctx = ReportContext(headline_lambdas(df, choice), headline_lambdas(trials_df, choice), det_df, tuple(cw_readings),
                        list(figures or []), links_from, acc=headline_lambdas(acc, choice), flags=flags,
                        notes_df=notes_df, selection=selection)
    if not df.empty and (df["attack"] == CW_ATTACK).any():  # once, for Table 2 and the comparison
        ctx.cw_acc = cw_accuracy(ctx.df, ctx.cw_readings)
    parts = ["# ER-Grid results", "",
             "Accuracy in % (`er-grid query` and its CSV give the same numbers as fractions), "
             "`mean ± std (95% interval) [n=examples × seeds]` over seeds; the interval is the wider "
             "of the one over the cell's examples (Wilson) and, where it has several runs, the one over its "
             "seeds (t). Robust = correct clean and under attack. `clean` = unattacked accuracy on the "
             "evaluation subset (not Tune's `holdout_accuracy`, which is on up to 512 test examples outside "
             "it). `worst case` = robust under every attack run at that ε (per example). "
             "A cell with fewer examples than planned is marked `incomplete`.", ""]
    parts += without_results + absent_attacks_line(ctx.df)
    for section in (SECTIONS if sections is None else sections):
        parts += section(ctx)
    return "\n".join(parts).rstrip() + "\n"


# The paper's tables and figures that each attack's rows feed, in the report's order.
PAPER_ATTACKS = ((PGD_ATTACK, "PGD", "Figures 3/4"), (AUTOATTACK, "AutoAttack", "Table 1"),
                 (CW_ATTACK, "C&W-ℓ2", "Table 2"), (RAYS, "RayS", "Table 3"))


def absent_attacks_line(df: pd.DataFrame) -> list[str]:
    """One line naming the paper's attacks without rows, whose sections the report leaves out."""
    ran = set() if df.empty else set(df["attack"].unique())
    absent = [f"{name} ({where})" for attack, name, where in PAPER_ATTACKS if attack not in ran]
    if not absent:
        return []
    return [f"Not in these rows, so left out: {', '.join(absent)}.", ""]


def _figure_links(ctx: ReportContext, prefix: str) -> list[str]:
    """Markdown image links to the PNG figures whose names start with ``prefix`` (PDF beside them)."""
    pngs = [Path(p) for p in ctx.figures if Path(p).suffix == ".png" and Path(p).stem.startswith(prefix)]
    links = []
    for png in pngs:
        pdf = png.with_suffix(".pdf")
        also = f" ([PDF]({_link(ctx, pdf)}))" if any(Path(p) == pdf for p in ctx.figures) else ""
        links += [f"![{png.stem}]({_link(ctx, png)}){also}", ""]
    return links


def _link(ctx: ReportContext, path: Path) -> str:
    if ctx.links_from is None:
        return path.as_posix()
    return Path(os.path.relpath(Path(path).resolve(), Path(ctx.links_from).resolve())).as_posix()


# The unattacked accuracy on the evaluation subset, named apart from Tune's held-out reading.
CLEAN_HEADER = f"clean, evaluation subset ({PCT})"


def table1_section(ctx: ReportContext) -> list[str]:
    return _attack_section(ctx.df, ctx.acc, AUTOATTACK, "Table 1: AutoAttack (ℓ∞) accuracy, %",
                           "Per configuration, with clean accuracy on the evaluation subset and the per-example "
                           "worst case over attacks:",
                           with_worst_case_column=True)


def table2_section(ctx: ReportContext) -> list[str]:
    return _cw_section(ctx.df, ctx.cw_readings, ctx.cw_acc)


def table3_section(ctx: ReportContext) -> list[str]:
    return _attack_section(ctx.df, ctx.acc, RAYS, "Table 3: RayS black-box (ℓ∞) accuracy, %",
                           "Per configuration, with clean accuracy on the evaluation subset and mean queries:",
                           extra="queries")


def worst_case_section(ctx: ReportContext) -> list[str]:
    return _worst_case_section(ctx.df, ctx.acc)


def row_settings_section(ctx: ReportContext) -> list[str]:
    settings = settings_table(ctx.df)
    if settings is None:
        return []
    return ["## Settings behind each row (λ, training ε)", "", frame_markdown(settings), ""]


def trials_section(ctx: ReportContext) -> list[str]:
    return [] if ctx.trials_df is None else _trial_summary(ctx.trials_df)


def detection_tables(det_df: Optional[pd.DataFrame]) -> str:
    """The paper's detection Tables 5–8 under the report's heading; '' when there are no rows.

    The tables themselves (familiar-attack Table 5, cross-attack Tables 6–8) are laid out with
    the detection stage in :mod:`grid.report.detection_tables`.
    """
    text = detection_table_text(det_df)
    return f"## Detection (Tables 5–8)\n\n{text}" if text else ""


def detection_section(ctx: ReportContext) -> list[str]:
    text = detection_tables(ctx.det_df)
    return [text, ""] if text else []


def embedding_section(ctx: ReportContext) -> list[str]:
    """Links to the t-SNE figures (Figures 5/6) when they were drawn."""
    links = _figure_links(ctx, "embedding_")
    if not links:
        return []
    return ["## Figures 5/6: t-SNE of the code z, natural and PGD images", "",
            "Per dataset: the code z of the evaluation subset, natural (left of each pair) and "
            "under ℓ∞-PGD (right; ▼ = the attack changed the prediction). Each PGD panel's ε, in its "
            "title, is where that trial's PGD accuracy is nearest 50%, so that both fooled and "
            "surviving examples show (the dataset's training ε where the trial swept PGD at fewer "
            "than two nonzero ε, or the spec's `codes.eps` where it gives one).", "", *links]


def figures_section(ctx: ReportContext) -> list[str]:
    curves = pgd_curves(ctx.df)
    if curves.empty:
        return []  # named in the report's opening line (absent_attacks_line)
    out = ["## Figures 3/4: PGD (ℓ∞) accuracy vs ε, %", "",
           "Rows ε, columns methods: the lines that `grid.report.figures.write_figures` plots.", ""]
    out += _figure_links(ctx, "figure")
    figure4 = ", ".join(method_name(m) for m in FIGURE4_METHODS if m in set(curves["method"]))
    for dataset in dict.fromkeys(curves["dataset"]):
        title = dataset if dataset_name(dataset) == dataset else f"{dataset} ({dataset_name(dataset)})"
        out += [f"### {title}", "", "Figure 3, all methods:", "",
                frame_markdown(figure_table(curves, dataset), unit=PCT), ""]
        panel = figure_table(curves, dataset, FIGURE4_METHODS)
        if not panel.empty:
            out += [f"Figure 4, {figure4}:", "", frame_markdown(panel, unit=PCT), ""]
    return out


def _attack_section(df: pd.DataFrame, acc: pd.DataFrame, attack: str, title: str, details_caption: str,
                    with_worst_case_column: bool = False, extra: Optional[str] = None) -> list[str]:
    table = attack_table(df, attack, acc)
    if table is None:
        return []  # named in the report's opening line (absent_attacks_line)
    return [f"## {title}", "", frame_markdown(table, unit=PCT), "", details_caption, "",
            _attack_details(df, acc, attack, with_worst_case_column, extra), ""]


def _attack_details(df: pd.DataFrame, acc: pd.DataFrame, attack: str, with_worst_case_column: bool = False,
                    extra: Optional[str] = None) -> str:
    """One row per (dataset, configuration, ε) with clean accuracy (and worst case / queries)."""
    keys = ["dataset", "method", "train_eps", "lam", "norm", "eps"]
    mine = acc[acc["attack"] == attack]
    header = ["dataset", "method", "ε", CLEAN_HEADER, f"{attack} ({PCT})"]
    if with_worst_case_column:
        # pandas merges NaN keys (λ/train ε of methods without them) as equal, as needed here.
        taken = ["robust_accuracy", "robust_std", "runs", "n", "n_planned", "robust_lo", "robust_hi", "seed_lo", "seed_hi"]
        worst = acc[acc["attack"] == WORST_CASE][keys + [c for c in taken if c in acc.columns]]
        mine = mine.merge(worst.rename(columns={c: f"wc_{c}" for c in taken}), on=keys, how="left")
        header.append(f"worst case ({PCT})")
    if extra == "queries":
        queries = df[df["attack"] == attack].groupby(keys, dropna=False)["queries"].mean()
        mine = mine.merge(queries.rename("mean_queries").reset_index(), on=keys, how="left")
        header.append("mean queries")
    mine = mine.assign(row_label=config_labels(mine))
    rows = []
    for row in mine.sort_values(["dataset", "row_label", "eps"]).itertuples():
        cells = [row.dataset, row.row_label, num(row.eps), mean_std(row, "clean"), mean_std(row)]
        if with_worst_case_column:
            worst = SimpleNamespace(**{k[3:]: v for k, v in row._asdict().items() if k.startswith("wc_")})
            cells.append(mean_std(worst))
        if extra == "queries":
            q = row.mean_queries
            cells.append(f"{q:.0f}" if present(q) and q >= 0 else "–")
        rows.append(cells)
    return markdown_table(header, rows)


def _cw_section(df: pd.DataFrame, readings: tuple[CWReading, ...], acc: Optional[pd.DataFrame]) -> list[str]:
    bounds = " and ".join(r.header() for r in readings)
    out = [f"## Table 2: C&W (ℓ2) accuracy at {bounds}, %", ""]
    if df.empty or not (df["attack"] == CW_ATTACK).any():
        return []  # named in the report's opening line (absent_attacks_line)
    if acc is None:
        acc = cw_accuracy(df, readings)  # once, for the paper-layout table and the per-configuration rows
    table = cw_table(df, readings, acc)
    notes = ["The paper's bound \"ℓ2 < 0.005\" read two ways, N = the number of input values (784 on MNIST): "
             "RMS ℓ2/√N (the stored `l2_rms`) and ℓ2/N (the Defense-GAN evaluation the paper follows prints an "
             "adversarial example at ℓ2 3.10: 0.0040 per value, 0.11 RMS). Robust = correct clean and C&W failed "
             "or needed more than the bound. A C&W setting other than ours is named in the column.", ""]
    by_reading = {(r.reading, *_cw_key(r)): r for r in acc.itertuples(index=False)}
    per = acc[acc["reading"] == readings[0].key]
    per = per.assign(row_label=config_labels(per))
    header = ["dataset", "method", "C&W setting", CLEAN_HEADER, *[f"C&W, {r.header()} ({PCT})" for r in readings]]
    rows = []
    for r in per.sort_values(["dataset", "row_label", "cw_setting"]).itertuples():
        mine = [by_reading.get((reading.key, *_cw_key(r))) for reading in readings]
        rows.append([r.dataset, r.row_label, r.cw_setting or "default", mean_std(r, "clean"),
                     *[mean_std(m) if m is not None else "–" for m in mine]])
    return out + [frame_markdown(table, unit=PCT), "", *notes, *cw_reading_fit(acc, readings),
                  "Per configuration, with clean accuracy on the evaluation subset:", "", markdown_table(header, rows), ""]


def _cw_key(row) -> tuple:
    """A Table 2 row's configuration and C&W setting, NaN λ / training ε as None (hashable, equal)."""
    return (row.dataset, row.method, *(float(v) if present(v) else None for v in (row.train_eps, row.lam)),
            row.cw_setting)


def _worst_case_section(df: pd.DataFrame, acc: pd.DataFrame) -> list[str]:
    out = ["## Worst case over attacks, per example, %", ""]
    table = worst_case_table(df, acc)
    if table is None:
        return out + ["_no ε with two or more attacks_", ""]
    over = worst_case_attacks(df)
    notes = [f"- {column}: over {', '.join(over[column])}" for column in table.columns if column in over]
    return out + [frame_markdown(table, unit=PCT), "", *notes, ""]


def _trial_summary(trials_df: pd.DataFrame) -> list[str]:
    out = ["## Trials: clean accuracy on the evaluation subset and wall time", ""]
    if trials_df.empty:
        return out + ["_no trial rows_", ""]
    keys = ["dataset", "method", *CONFIG_COLUMNS]
    agg = trials_df.groupby(keys, dropna=False, sort=True).agg(
        robust_accuracy=("clean_accuracy", "mean"), robust_std=("clean_accuracy", "std"),
        runs=("trial_id", "nunique"), wall=("wall_seconds", "mean"),
    ).reset_index()
    agg = agg.assign(row_label=config_labels(agg))
    header = ["dataset", "method", f"clean accuracy, evaluation subset ({PCT})", "mean wall time (min)"]
    rows = [[r.dataset, r.row_label, mean_std(r), f"{r.wall / 60:.1f}"]
            for r in agg.sort_values(["dataset", "row_label"]).itertuples()]
    return out + [markdown_table(header, rows), ""]


def sanity_checks_section(ctx: ReportContext) -> list[str]:
    return sanity_section(ctx.flags, not_checked_frame(ctx.df, ctx.trials_df, ctx.notes_df))


def paper_section(ctx: ReportContext) -> list[str]:
    return paper_comparison_section(ctx.acc, ctx.cw_acc, ctx.cw_readings)


# The report, in order. Insert new builders before settings_section, which closes the report.
def comparisons_section(ctx: ReportContext) -> list[str]:
    return comparison_section(ctx.df)


def lambda_selection_section(ctx: ReportContext) -> list[str]:
    return ctx.selection


SECTIONS: list[Section] = [
    sanity_checks_section, paper_section, comparisons_section, lambda_selection_section, figures_section,
    embedding_section, table1_section, table2_section,
    table3_section, worst_case_section, row_settings_section, trials_section, detection_section, settings_section,
]
