"""``er-grid``: run, resume and inspect grids; query and report their results.

    er-grid run SPEC.yaml [--storage PATH|URI]      run every trial of a spec (Ray Tune)
    er-grid resume EXPERIMENT                       continue a crashed/killed/preempted run
    er-grid status EXPERIMENT                       trials done/running/errored, eval batches
    er-grid query RESULTS [--dataset D ...] [--method M ...] [--attack A ...] [--eps E ...]
                  [--experiment X ...] [--by COLS] [--format table|csv|parquet] [--out FILE]
    er-grid report RESULTS [--out FILE] [--figures DIR]   the paper's tables (markdown), Figures 3/4 (PNG)

EXPERIMENT is Tune's experiment folder ``<storage>/<experiment>`` (printed by ``run``);
RESULTS is a results store root (``<storage>/<experiment>/results`` or a URI) or an
experiment folder (its ``results`` is used). User errors print one line and exit with 2;
``run``/``resume`` exit with 1 when a trial errored.

:func:`job_main` is the command line of the job files in ``jobs/`` (``--preset``,
``--dry-run``, ``--storage``): a job file holds specs and one call to it.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Callable, Optional, Sequence

EXIT_OK, EXIT_TRIAL_ERRORS, EXIT_USAGE = 0, 1, 2
FORMATS = ("table", "csv", "parquet")
FILTERS = ("experiment", "dataset", "method", "attack", "eps")


class UsageError(ValueError):
    """Bad input from the command line: printed as one line, exit code 2."""


# --------------------------------------------------------------------------- commands


def cmd_run(args) -> int:
    from grid.run import run

    return _print_summary(run(load_spec(_existing_file(args.spec, "SPEC"), args.storage)))


def cmd_resume(args) -> int:
    from grid.run import resume

    return _print_summary(resume(args.experiment))


def cmd_status(args) -> int:
    from tqdm import tqdm

    from grid.run import status, storage_location

    trials = status(args.experiment, progress=lambda it: tqdm(it, desc="reading trials", unit="trial",
                                                               leave=False, disable=None))
    states: dict[str, int] = {}
    for t in trials:
        states[t.state] = states.get(t.state, 0) + 1
    done = sum(t.batches_done for t in trials)
    total = sum(t.batches_total for t in trials)
    print(f"experiment: {storage_location(args.experiment)}")
    print(f"trials: {len(trials)} — done {states.get('TERMINATED', 0)}, running {states.get('RUNNING', 0)}, "
          f"pending {states.get('PENDING', 0) + states.get('PAUSED', 0)}, errored {states.get('ERROR', 0)}")
    print(f"evaluation batches: {done}/{total} ({100.0 * done / total if total else 0.0:.1f}%)")
    from grid.run import results_location
    from grid.sanity import flag_names, flags_for_trials, status_summary

    # Sanity flags of finished trials: stored by the trainable, recomputed where missing.
    flags = flags_for_trials(results_location(storage_location(args.experiment)),
                             [t.trial_id for t in trials if t.state == "TERMINATED"])
    print(status_summary(flags))
    names = flag_names(flags)
    width = max([len(t.name) for t in trials] + [5])
    print(f"\n{'trial':<{width}}  {'state':<10}  {'epochs':>7}  {'eval batches':>12}  flags")
    for t in trials:
        print(f"{t.name:<{width}}  {t.state:<10}  {t.epochs_done:>3}/{t.epochs:<3}  "
              f"{t.batches_done:>5}/{t.batches_total:<6}  {names.get(t.trial_id, '')}")
    return EXIT_OK


def cmd_query(args) -> int:
    from grid import report

    # Grouped by attack, the attack filter selects table rows (the worst case needs every
    # attack's rows); otherwise it selects the example rows that are pooled.
    by_attack = "attack" in args.by
    filters = {f: getattr(args, f) for f in FILTERS if getattr(args, f) and not (f == "attack" and by_attack)}
    df = _load_rows(args.results, filters)
    table = report.robust_accuracy(df, by=args.by, worst_case=not args.no_worst_case)
    from grid.sanity import add_flags_column, flags_for_trials

    table = add_flags_column(table, df, flags_for_trials(results_root(args.results), df["trial_id"].unique()))
    if args.attack and by_attack:
        table = table[table["attack"].isin(args.attack)]
        if table.empty:
            raise UsageError(f"no rows for attack(s) {args.attack}; attacks here: "
                             f"{', '.join(sorted(set(df['attack'])))} (and worst_case)")
    _emit(table, args.format, args.out)
    return EXIT_OK


def cmd_report(args) -> int:
    from grid import report
    from grid.detection import load_detection
    from grid.store import load_trials

    df = _load_rows(args.results, {})
    root = results_root(args.results)
    trials = load_trials(root)
    text = report.report_markdown(df, trials, load_detection(root))
    if args.out:
        Path(args.out).write_text(text)
        print(f"wrote {args.out}")
    else:
        print(text, end="")
    if args.figures:
        from grid.figures import write_figures
        from grid.sanity import flags_from_frames, headline_rows

        # The figures leave collapsed trials out, as the report's tables do.
        for path in write_figures(headline_rows(df, flags_from_frames(df, trials)), args.figures):
            print(f"wrote {path}", file=sys.stderr)
    return EXIT_OK


# --------------------------------------------------------------------------- helpers


def results_root(path: str) -> str:
    """A results store root; an experiment folder (with ``tuner.pkl``) means its ``results``."""
    if "://" in path:
        return path
    p = Path(path).expanduser()
    if not p.exists():
        raise UsageError(f"RESULTS: {path} does not exist")
    if (p / "tuner.pkl").exists():
        p = p / "results"
    if not (p / "examples").is_dir():
        raise UsageError(f"RESULTS: {p} holds no results (no examples/ folder); give <storage>/<experiment>/results")
    return str(p.resolve())


def _load_rows(results: str, filters: dict):
    """Example rows under ``results`` matching ``filters`` (column → list of values)."""
    from grid.store import load

    df = load(results_root(results), **filters)
    if df.empty:
        raise UsageError(f"no result rows match {filters or 'anything'} in {results}")
    return df


def _emit(table, fmt: str, out: Optional[str]) -> None:
    if fmt == "parquet":
        if not out:
            raise UsageError("--format parquet needs --out FILE")
        table.to_parquet(out, index=False)
        print(f"wrote {out} ({len(table)} rows)")
        return
    text = table.to_csv(index=False) if fmt == "csv" else _as_text_table(table)
    if out:
        Path(out).write_text(text)
        print(f"wrote {out} ({len(table)} rows)")
    else:
        print(text, end="" if text.endswith("\n") else "\n")


def _as_text_table(table) -> str:
    shown = table.copy()
    for column in ("robust_accuracy", "robust_std", "clean_accuracy", "clean_std"):
        if column in shown.columns:
            shown[column] = shown[column].map(lambda v: "–" if v != v else f"{v:.3f}")
    return shown.to_string(index=False) + "\n"


def _print_summary(summary) -> int:
    print(f"experiment: {summary.experiment_path}")
    print(f"trials: {summary.trials} — finished {summary.terminated}, errored {summary.errored}")
    for line in summary.errors:
        print(f"  error: {line}")
    if summary.errored:
        print(f"resume with: er-grid resume {summary.experiment_path}")
        return EXIT_TRIAL_ERRORS
    return EXIT_OK


def spec_with_storage(spec: dict, storage: Optional[str]):
    """A validated GridSpec from ``spec`` with ``storage`` (if given) as its storage_path, so
    that the spec's checks (e.g. shared storage when num_nodes > 1) see the real location."""
    from grid.spec import GridSpec

    return GridSpec.from_dict(dict(spec, storage_path=storage) if storage else spec)


def load_spec(path: str, storage: Optional[str] = None):
    """GridSpec from a YAML file, ``--storage`` applied before validation."""
    import yaml

    raw = yaml.safe_load(Path(path).read_text())
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
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("run", help="run every trial of a YAML spec")
    p.add_argument("spec", metavar="SPEC", help="grid spec (YAML); see grid/spec.py")
    p.add_argument("--storage", help="storage path or URI (overrides the spec's storage_path)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("resume", help="resume an interrupted experiment")
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment folder <storage>/<experiment>")
    p.set_defaults(func=cmd_resume)

    p = sub.add_parser("status", help="trials and evaluation batches done")
    p.add_argument("experiment", metavar="EXPERIMENT", help="experiment folder <storage>/<experiment>")
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("query", help="robust accuracy per dataset/method/attack/ε (and worst case)")
    p.add_argument("results", metavar="RESULTS", help="results root or experiment folder")
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
    p.set_defaults(func=cmd_query)

    p = sub.add_parser("report", help="the paper's tables as markdown")
    p.add_argument("results", metavar="RESULTS", help="results root or experiment folder")
    p.add_argument("--out", help="write the markdown to this file")
    p.add_argument("--figures", metavar="DIR",
                   help="also write the paper's Figures 3/4 as PNG files into DIR (figure3_<dataset>.png, ...)")
    p.set_defaults(func=cmd_report)
    return parser


def main(argv: Optional[Sequence[str]] = None) -> int:
    """Entry point of ``er-grid``; returns the exit code."""
    args = build_parser().parse_args(argv)
    return _guarded(lambda: args.func(args))


def _guarded(command: Callable[[], int]) -> int:
    """Run ``command``; user errors become one line on stderr and exit code 2."""
    import yaml

    from grid.run import GridError

    try:
        return command()
    except (UsageError, GridError, FileNotFoundError, yaml.YAMLError) as err:
        print(f"er-grid: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except ValueError as err:
        # Spec validation and store filters raise ValueError naming the bad field.
        print(f"er-grid: error: {err}", file=sys.stderr)
        return EXIT_USAGE


# --------------------------------------------------------------------------- job files


def job_main(presets: dict, default: str, argv: Optional[Sequence[str]] = None,
             after_run: Optional[Callable] = None) -> int:
    """Command line of a job file: ``--preset NAME``, ``--dry-run``, ``--storage PATH|URI``.

    ``presets``: name → spec dict (see grid/spec.py). ``--dry-run`` prints the trial table and
    the GPU-hours estimate and runs nothing. ``after_run(spec, summary)``, if given, runs after
    the grid (e.g. to print the job's own table).
    """
    parser = argparse.ArgumentParser(description="Run an ER-Grid job (a grid spec) on the current Ray cluster.")
    parser.add_argument("--preset", choices=sorted(presets), default=default)
    parser.add_argument("--dry-run", action="store_true", help="print the trials and a GPU-hours estimate only")
    parser.add_argument("--storage", help="storage path or URI (default: the spec's storage_path)")
    args = parser.parse_args(argv)

    def command() -> int:
        from grid.run import run

        spec = spec_with_storage(presets[args.preset], args.storage)
        if args.dry_run:
            print(dry_run_table(spec))
            return EXIT_OK
        summary = run(spec)
        code = _print_summary(summary)
        if after_run is not None:
            after_run(spec, summary)
        return code

    return _guarded(command)


def dry_run_table(spec) -> str:
    """The trials of ``spec`` with evaluation size and GPU-hour estimates, plus the total."""
    from grid.spec import gpu_hours_estimate, trial_gpu_seconds

    trials = spec.expand()
    header = f"{'trial':<48} {'epochs':>6} {'eval (attack, ε)':>17} {'examples':>9} {'GPU-h':>8}"
    lines = [header, "-" * len(header)]
    for t in trials:
        lines.append(f"{t.name:<48} {t.epochs:>6} {len(t.eval_plan):>17} {t.eval_n:>9} "
                     f"{trial_gpu_seconds(t) / 3600:>8.2f}")
    by_dataset: dict[str, int] = {}
    for t in trials:
        by_dataset[t.dataset] = by_dataset.get(t.dataset, 0) + 1
    lines += [
        "-" * len(header),
        f"{len(trials)} trials ({', '.join(f'{d}: {n}' for d, n in by_dataset.items())}); "
        f"evaluation rows: {sum(len(t.eval_plan) * t.eval_n for t in trials):,}",
        f"estimated total: {gpu_hours_estimate(trials):,.1f} GPU-hours (full-GPU equivalent, ±2×)",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
