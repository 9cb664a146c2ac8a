"""``er-grid``: run, resume and inspect grids; query and report their results.

    er-grid run SPEC.yaml [--storage PATH|URI]      run every trial of a spec (Ray Tune)
    er-grid resume EXPERIMENT_OR_RESULTS            continue a crashed/killed/preempted run
    er-grid status EXPERIMENT_OR_RESULTS            trials, eval batches, damaged and stray files
    er-grid query EXPERIMENT_OR_RESULTS [--dataset D ...] [--method M ...] [--attack A ...] [--eps E ...]
                  [--experiment X ...] [--by COLS] [--format table|csv|parquet] [--out FILE]
    er-grid report EXPERIMENT_OR_RESULTS [--out FILE] [--figures DIR] [--html FILE] [--json FILE]
                  the paper's tables (markdown), Figures 3–6 (PNG + PDF), HTML, JSON records
    er-grid submit [--address URL] -- ENTRYPOINT   ray job submit, with this checkout's code version
    er-grid data fetch NAME [--root DIR] | data check [NAME] [--root DIR]   datasets (grid/cli/data.py)
    er-grid --version                               the package version and the code version rows record

EXPERIMENT_OR_RESULTS follows one convention (``grid.store.open_results``): the experiment
folder ``<storage>/<experiment>`` (printed by ``run``) or its ``results`` folder, local or a
URI; a folder with no results is one clear error. Filter values and ``--by`` columns that match
nothing are named with the values there are. User errors, damaged files and OS errors
(permission, is/not a directory, disk full) print one line naming the field or path and exit
with 2; ``run``/``resume`` exit with 1 when a trial errored. ``status``, ``query`` and
``report`` read only er-grid's own JSON and parquet, never a pickle (``grid.experiment.status``).

:func:`grid.cli.job.job_main` is the command line of the job files in ``jobs/``.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Optional, Sequence

from grid.common.files import write_bytes_atomic, write_text_atomic

from .common import EXIT_OK, UsageError, guarded, print_summary, spec_with_storage
from .filters import check_by
from .rows import load_rows, query_rows

FORMATS = ("table", "csv", "parquet")
FILTERS = ("experiment", "dataset", "method", "attack", "eps")
SKIP_DAMAGED_HELP = ("leave out committed files that are missing or damaged (listed on stderr) "
                     "instead of stopping; `er-grid status` shows them, `er-grid resume` recomputes them")


# --------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from grid.run import run

    return print_summary(run(load_spec(_existing_file(args.spec, "SPEC"), args.storage)))


def cmd_resume(args) -> int:
    from grid.run import resume

    return print_summary(resume(args.path))


def cmd_status(args) -> int:
    from tqdm import tqdm

    from grid.experiment import status

    report = status(args.path, progress=lambda it: tqdm(it, desc="reading trials", unit="trial",
                                                               leave=False, disable=None))
    trials = report.trials
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    done = sum(t.batches_done for t in trials)
    total = sum(t.batches_total for t in trials)
    print(f"experiment: {report.experiment_path}")
    print(f"trials: {len(trials)} — done {states.get('DONE', 0)}, damaged {states.get('DAMAGED', 0)}, "
          f"evaluating {states.get('EVALUATING', 0)}, training {states.get('TRAINING', 0)}, "
          f"pending {states.get('PENDING', 0)}")
    print(f"evaluation batches: {done}/{total} ({100.0 * done / total if total else 0.0:.1f}%)")
    print(f"time remaining (estimate): {_remaining(trials)}")
    from grid.store import flag_names, flags_for_trials, status_summary

    # Sanity flags of finished trials: stored by the trainable, recomputed where missing.
    flags = flags_for_trials(report.results_path, [t.trial_id for t in trials if t.state == "DONE"])
    print(status_summary(flags))
    names = flag_names(flags)
    width = max([len(t.name) for t in trials] + [5])
    print(f"\n{'trial':<{width}}  {'state':<10}  {'epochs':>7}  {'eval batches':>12}  flags")
    for t in trials:
        print(f"{t.name:<{width}}  {t.state:<10}  {t.epochs_done:>3}/{t.epochs:<3}  "
              f"{t.batches_done:>5}/{t.batches_total:<6}  {names.get(t.trial_id, '')}")
        for line in t.damaged:
            print(f"    damaged: {line}")
    for path, reason in report.damaged_records:
        print(f"damaged commit record: {path}: {reason}")
    if report.damaged or report.damaged_records:
        print(f"repair with: er-grid resume {report.experiment_path}")
    if report.not_part_of_store:
        print(f"\nnot part of the store (never read; {len(report.not_part_of_store)} file(s) under "
              f"{report.results_path}):")
        for path in report.not_part_of_store:
            print(f"    {path}")
    if report.moved_aside:
        print(f"moved aside by repairs (kept as evidence): {len(report.moved_aside)} file(s) in _moved_aside/")
    return EXIT_OK


def _remaining(trials) -> str:
    """``er-grid status``'s estimate of the time left, from each trial's own pace (``grid.run.estimate``).

    The cost model builds each planned attack to count its passes, which needs torch; status
    itself does not, so without torch the estimate alone is left out, saying why."""
    try:
        from grid.run.estimate import format_duration, remaining_seconds

        return format_duration(remaining_seconds(trials))
    except ImportError as err:
        return f"unavailable here ({err.name or 'a library'} is not importable; the cost model needs it)"


def cmd_query(args) -> int:
    # Grouped by attack and asked for the worst case, the attack filter selects table rows (the
    # worst case needs every attack's rows); otherwise it selects the rows read.
    _check_destination(args.out, "--out")
    check_by(args.by)
    by_attack = "attack" in args.by
    every_attack = by_attack and "worst_case" in (args.attack or [])
    filters = {f: getattr(args, f) for f in FILTERS if getattr(args, f) and not (f == "attack" and every_attack)}
    parts = query_rows(args.path, filters, args.by, not args.no_worst_case, args.skip_damaged)
    missing = _without_results(args.path, filters, args.skip_damaged)
    if missing:  # a planned trial with no rows has no row to mark incomplete: named here
        from grid.report.query import no_results_line

        print(f"er-grid: warning: {no_results_line(missing)}", file=sys.stderr)
    # Refuses (exit 2, naming the keys) a --by that would average over attacks, ε or datasets.
    table = parts.table()
    from grid.report.sanity import add_flags_column
    from grid.store import flags_for_trials

    trials = parts.trials()
    flags = flags_for_trials(results_root(args.path), trials["trial_id"].unique(),
                             damaged="skip" if args.skip_damaged else "raise")
    table = add_flags_column(table, trials, flags)
    if args.attack and by_attack:
        table = table[table["attack"].isin(args.attack)]
        if table.empty:
            attacks = set(parts.per_trial()["attack"]) - {"worst_case"}
            raise UsageError(f"no rows for attack(s) {args.attack}; attacks here: "
                             f"{', '.join(sorted(attacks))} (and worst_case)")
    _emit(table, args.format, args.out)
    return EXIT_OK


def cmd_report(args) -> int:
    from grid.report.export import write_report
    from grid.store import load_detection, load_notes, load_trials

    _check_destination(args.out, "--out")
    _check_destination(args.figures, "--figures", folder=True)
    _check_destination(args.html, "--html")
    _check_destination(args.json, "--json")
    if args.html and not args.figures:
        raise UsageError("--html embeds the figures: give --figures DIR too")
    if args.figures:
        Path(args.figures).mkdir(parents=True, exist_ok=True)  # a folder that cannot be made fails now
    damaged = "skip" if args.skip_damaged else "raise"
    df = load_rows(args.path, {}, args.skip_damaged)
    from grid.report.query import WITHOUT_RESULTS

    df.attrs[WITHOUT_RESULTS] = _without_results(args.path, {}, args.skip_damaged)  # a line of the report
    root = results_root(args.path)
    done = write_report(df, load_trials(root, damaged=damaged), load_detection(root, damaged=damaged),
                        out=_path(args.out), figures_dir=_path(args.figures), html_path=_path(args.html),
                        json_path=_path(args.json), results_root=root, notes_df=load_notes(root, damaged=damaged))
    if not args.out:
        print(done["markdown"], end="")
    for path in done["written"]:
        print(f"wrote {path}", file=sys.stderr if not args.out else sys.stdout)
    return EXIT_OK


def _without_results(path: str, filters: dict, skip_damaged: bool) -> list:
    """Planned trials without rows (``grid.report.query.planned_without_results``); a damaged
    spec record stops the command unless ``skip_damaged`` (then a warning, and none named)."""
    from grid.common.errors import GridError
    from grid.report.query import planned_without_results

    try:
        return planned_without_results(path, filters)
    except GridError as err:
        if not skip_damaged:
            raise
        print(f"er-grid: warning: {err}; planned trials without results not listed", file=sys.stderr)
        return []


def _path(value: Optional[str]) -> Optional[Path]:
    return None if value is None else Path(value)


# --------------------------------------------------------------------------- helpers


def results_root(path: str) -> str:
    """The results store a user means: an experiment folder or its ``results`` folder (local
    or URI), by the one convention of ``grid.store.open_results``; no results is an error."""
    from grid.store import open_results

    return open_results(path).root


def _check_destination(path: Optional[str], what: str, folder: bool = False) -> None:
    """Refuse an output path that cannot be written, before any work is done."""
    if not path:
        return
    p = Path(path)
    if not folder and p.is_dir():
        raise UsageError(f"{what}: {path} is a directory; give a file name")
    if folder and p.exists() and not p.is_dir():
        raise UsageError(f"{what}: {path} is a file; give a folder")
    parent = p if folder and p.is_dir() else p.parent
    if parent.exists() and not os.access(parent, os.W_OK):
        raise UsageError(f"{what}: {parent} is not writable")


def _emit(table, fmt: str, out: Optional[str]) -> None:
    _check_destination(out, "--out")
    if fmt == "parquet":
        if not out:
            raise UsageError("--format parquet needs --out FILE")
        import io

        buffer = io.BytesIO()
        table.to_parquet(buffer, index=False)
        write_bytes_atomic(out, buffer.getvalue())
        print(f"wrote {out} ({len(table)} rows)")
        return
    text = table.to_csv(index=False) if fmt == "csv" else _as_text_table(table)
    if out:
        write_text_atomic(out, text)
        print(f"wrote {out} ({len(table)} rows)")
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def _as_text_table(table) -> str:
    shown = table.copy()
    for column in ("robust_accuracy", "robust_std", "clean_accuracy", "clean_std", "robust_lo", "robust_hi",
                   "seed_lo", "seed_hi"):
        if column in shown.columns:
            shown[column] = shown[column].map(lambda v: "–" if v != v else f"{v:.3f}")
    if "complete" in shown.columns:
        # A cell from fewer examples than the plan asked for is flagged where the eye lands.
        shown["complete"] = shown["complete"].map(lambda v: "?" if _missing(v) else ("yes" if v else "INCOMPLETE"))
    if "n_planned" in shown.columns:
        shown["n_planned"] = shown["n_planned"].map(lambda v: "?" if _missing(v) else str(int(v)))
    return shown.to_string(index=False) + "\n"


def _missing(value) -> bool:
    import pandas as pd

    return value is None or bool(pd.isna(value))


def load_spec(path: str, storage: Optional[str] = None):
    """GridSpec from a YAML file, ``--storage`` applied before validation."""
    from grid.spec import load_yaml

    raw = load_yaml(Path(path).read_text(), path)
    if not isinstance(raw, dict):
        raise UsageError(f"SPEC: {path} is not a YAML mapping of spec fields")
    return spec_with_storage(raw, storage)


def _existing_file(path: str, what: str) -> str:
    if not Path(path).is_file():
        raise UsageError(f"{what}: no such file: {path}")
    return path


def _csv_list(text: str) -> list[str]:
    return [c.strip() for c in text.split(",") if c.strip()]


# --------------------------------------------------------------------------- parser


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="er-grid", description="Run and inspect ER-Grid experiments.")
    parser.add_argument("--version", action=VersionAction,
                        help="print the package version and the code version result rows record, and exit")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run every trial of a YAML spec")
    p.add_argument("spec", metavar="SPEC", help="grid spec (YAML); see grid/spec.py")
    p.add_argument("--storage", help="storage path or URI (overrides the spec's storage_path)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="resume an interrupted experiment")
    add_path_argument(p)
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="trials, evaluation batches done, damaged and stray files")
    add_path_argument(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("query", help="robust accuracy per dataset/method/attack/ε (and worst case)")
    add_path_argument(p)
    p.add_argument("--experiment", nargs="+", help="only these experiments")
    p.add_argument("--dataset", nargs="+", help="only these datasets")
    p.add_argument("--method", nargs="+", help="only these methods")
    p.add_argument("--attack", nargs="+", help="only these attacks (worst_case is one too)")
    p.add_argument("--eps", nargs="+", type=float, help="only these ε values")
    p.add_argument("--by", type=_csv_list, default=["dataset", "method", "attack", "eps"],
                   help="grouping columns, comma-separated (default: dataset,method,attack,eps)")
    p.add_argument("--no-worst-case", action="store_true", help="leave out the per-example worst case")
    p.add_argument("--format", choices=FORMATS, default="table")
    p.add_argument("--out", help="write to this file instead of stdout (required for parquet)")
    p.add_argument("--skip-damaged", action="store_true", help=SKIP_DAMAGED_HELP)
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("report", help="the paper's tables as markdown")
    add_path_argument(p)
    p.add_argument("--out", help="write the markdown to this file")
    p.add_argument("--figures", metavar="DIR",
                   help="also write the paper's Figures 3/4 (figure3/figure4) and the t-SNE Figures 5/6 "
                        "(embedding_<dataset>) into DIR as PNG (300 dpi) and PDF; the markdown links them")
    p.add_argument("--html", metavar="FILE", help="also write one self-contained HTML file (figures embedded)")
    p.add_argument("--json", metavar="FILE",
                   help="also write one JSON record per (dataset, method, λ, train ε, attack, ε)")
    p.add_argument("--skip-damaged", action="store_true", help=SKIP_DAMAGED_HELP)
    p.set_defaults(func=cmd_report)

    from .data import add_data_parser
    from .submit import add_submit_parser

    add_submit_parser(sub)  # er-grid submit -- ENTRYPOINT
    add_data_parser(sub)  # er-grid data fetch|check
    return parser


PATH_METAVAR = "EXPERIMENT_OR_RESULTS"


def add_path_argument(p: argparse.ArgumentParser) -> None:
    """The one positional of resume, status, query and report: either folder, by one convention."""
    p.add_argument("path", metavar=PATH_METAVAR,
                   help="the experiment folder <storage>/<experiment> or its results/ folder, local or a URI")


class VersionAction(argparse.Action):
    """``--version``: resolved only when asked (the code version runs git), then exit 0."""

    def __init__(self, option_strings, dest, **kwargs):
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        from importlib import metadata

        from grid.common.fingerprint import er_grid_code_version

        print(f"er-grid {metadata.version('er-grid')} (code version {er_grid_code_version()})")
        parser.exit()


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``er-grid``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return guarded(lambda: args.func(args))


if __name__ == "__main__":
    sys.exit(main())
