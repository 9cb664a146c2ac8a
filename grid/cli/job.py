"""The command line of the job files in ``jobs/``: ``--preset NAME``, ``--dry-run`` (trial table,
GPU-hours, wall time on ``--gpus`` GPUs, storage; ``--calibrate`` rescales the per-epoch costs
from a finished experiment), ``--storage PATH|URI`` (default: the preset's ``storage_path``, else
the user's own :func:`grid.common.locations.default_storage`, printed before the run). A job file
holds specs and one call to :func:`job_main`; errors print one line and exit 2, as in ``er-grid``.
"""

from __future__ import annotations

import argparse
from typing import Callable, Optional, Sequence

from .common import EXIT_OK, UsageError, guarded, print_summary, spec_with_storage


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
    parser.add_argument("--storage", help="storage path or URI (default: the preset's storage_path, else "
                                           "$XDG_DATA_HOME/er-grid/results, ~/.local/share/er-grid/results)")
    parser.add_argument("--gpus", type=int, default=1, help="--dry-run: GPUs to estimate the wall time for")
    parser.add_argument("--calibrate", metavar="EXPERIMENT_OR_RESULTS",
                        help="--dry-run: rescale the per-epoch costs from a finished experiment's trial rows")
    args = parser.parse_args(argv)

    def command() -> int:
        from grid.common.locations import default_storage, experiment_path, make_private
        from grid.run.tuner import run

        default = not (args.storage or presets[args.preset].get("storage_path"))
        spec = spec_with_storage(presets[args.preset], default_storage() if default else args.storage)
        results = experiment_path(spec.storage_path, spec.experiment)
        if args.dry_run:
            if args.gpus < 1:
                raise UsageError(f"--gpus: expected an integer ≥ 1, got {args.gpus}")
            epoch_seconds, note = None, None
            if args.calibrate:
                from grid.store import load_trials

                # Only trial rows are needed: an experiment folder or its results folder, by the
                # readers' one path convention (grid.store.open_results).
                measured = load_trials(args.calibrate)
                if measured.empty:
                    raise UsageError(f"--calibrate: no trial rows in {args.calibrate}")
                epoch_seconds, note = calibration(measured, spec, args.calibrate)
            print(dry_run_table(spec, gpus=args.gpus, epoch_seconds=epoch_seconds, calibration=note))
            print(f"results would go to: {results}")
            return EXIT_OK
        if default:
            make_private(spec.storage_path)
        print(f"results: {results}", flush=True)
        summary = run(spec)
        code = print_summary(summary)
        if after_run is not None:
            after_run(spec, summary)
        return code

    return guarded(command)


def calibration(measured, spec, source: str) -> tuple[dict, str]:
    """Per-epoch costs rescaled from ``measured`` trial rows and the note saying from what.

    Rows of datasets the grid does not run change nothing: when none of the grid's datasets was
    measured that is one line and exit 2, not an uncalibrated estimate that looks calibrated."""
    from grid.run.cost import calibrate

    datasets = list(dict.fromkeys(spec.datasets))
    covered = [d for d in datasets if d in set(measured["dataset"])]
    if not covered:
        raise UsageError(f"--calibrate: {source} has trial rows of {', '.join(sorted(set(measured['dataset'])))} "
                         f"only, and this grid runs {', '.join(datasets)}: nothing to calibrate from (calibrate "
                         f"from an experiment on one of the grid's datasets)")
    mine = measured[measured["dataset"].isin(covered)]
    kept = [d for d in datasets if d not in covered]
    note = (f"calibrated for {', '.join(covered)} from {len(mine)} trial row(s) on "
            f"{', '.join(sorted(set(mine['device'])))}" + (f"; {', '.join(kept)} from the assumed GPU's table"
                                                           if kept else ""))
    return calibrate(mine), note


def dry_run_table(spec, gpus: int = 1, epoch_seconds: Optional[dict] = None, calibration: Optional[str] = None) -> str:
    """The trials of ``spec`` with evaluation size and GPU-hour estimates, then the totals: the
    GPU assumed, GPU-hours, wall time on ``gpus`` GPUs, and storage (see :mod:`grid.run.cost`)."""
    from grid.run.cost import ASSUMED_GPU, human_bytes, storage_bytes, trial_cost, wall_hours

    trials = spec.expand()
    header = f"{'trial':<48} {'epochs':>6} {'eval (attack, ε)':>17} {'examples':>9} {'GPU-h':>8}"
    lines = [header, "-" * len(header)]
    total = 0.0
    for t in trials:
        seconds = trial_cost(t, epoch_seconds).gpu_seconds
        total += seconds
        lines.append(f"{t.name:<48} {t.epochs:>6} {len(t.eval_plan):>17} {t.eval_n:>9} {seconds / 3600:>8.2f}")
    by_dataset: dict[str, int] = {}
    for t in trials:
        by_dataset[t.dataset] = by_dataset.get(t.dataset, 0) + 1
    checkpoints, results = storage_bytes(trials, spec.keep_checkpoints)
    kept = "every epoch's" if spec.keep_checkpoints is None else f"{spec.keep_checkpoints} per trial"
    lines += [
        "-" * len(header),
        f"{len(trials)} trials ({', '.join(f'{d}: {n}' for d, n in by_dataset.items())}); "
        f"evaluation rows: {sum(len(t.eval_plan) * t.eval_n for t in trials):,}",
        f"assumed GPU: {ASSUMED_GPU}" + (f"; per-epoch costs {calibration}" if calibration else ""),
        f"estimated total: {total / 3600:,.1f} GPU-hours (full-GPU equivalent, ±2×)",
        f"wall time on {gpus} GPU(s): {wall_hours(trials, gpus, epoch_seconds):,.1f} h (work spread evenly, "
        "never less than the longest trial)",
        f"storage: {human_bytes(checkpoints + results)} ({human_bytes(checkpoints)} checkpoints, {kept}; "
        f"{human_bytes(results)} results)",
    ]
    first = {}
    for t in trials:
        first.setdefault(t.dataset, t)
    for dataset, t in first.items():
        lines.append(training_line(spec, t))
        lines += plan_lines(t)
    return "\n".join(lines)


def training_line(spec, trial) -> str:
    """One dataset's training: recipe and its settings, seeds, validation split, evaluated checkpoint."""
    settings = trial.recipe_settings()
    shown = ", ".join(f"{k} {settings[k]}" for k in ("optimizer", "lr", "momentum", "weight_decay", "lr_schedule",
                                                      "augment") if k in settings)
    seeds = list(spec.seeds_for(trial.dataset))
    return (f"{trial.dataset} training: recipe {settings['name']} ({shown}); seeds {seeds}; validation "
            f"{trial.validation_n} training images; evaluates the {trial.evaluate.replace('_', '-')} checkpoint")


RUN_TIME_CHECKS = ("collapsed", "critic_dead", "autoattack_warning", "eot_insufficient")


def plan_lines(trial) -> list[str]:
    """One dataset's evaluation plan: each attack's ε and its gradient passes per example (as the
    attack states them), and the plan-dependent sanity checks it cannot run, with why."""
    from er_core.sanity import AttackOutcome, check

    by_attack: dict[str, list] = {}
    for item in trial.eval_plan:
        by_attack.setdefault(item.attack, []).append(item)
    parts = []
    for attack, items in by_attack.items():
        eps = sorted(float(i.eps) for i in items)
        shown = ", ".join(f"{e:g}" for e in eps) if len(eps) <= 4 else f"{eps[0]:g}…{eps[-1]:g} ({len(eps)} values)"
        passes = sum(i.build().gradient_passes() for i in items)
        parts.append(f"{attack} ε {shown} [{passes:,.0f} passes/example]")
    # The rules judge the plan's shape alone on empty outcomes; training-record checks are left out.
    outcomes = [AttackOutcome(i.attack, i.build().norm, float(i.eps), frozenset(), frozenset(), 0, clean=frozenset())
                for i in trial.eval_plan]
    _flags, unchecked = check({"trial_id": trial.trial_id, "clean_accuracy": 1.0}, outcomes, 10)
    # Checks that read what a run records (the training curve, AutoAttack's notes) are judged then.
    plan_bound = {k: v for k, v in unchecked.items() if k not in RUN_TIME_CHECKS}
    if not any(i.attack == "autoattack" for i in trial.eval_plan):
        plan_bound.update({k: "the plan has no AutoAttack" for k in ("autoattack_warning", "eot_insufficient")})
    cannot = "; ".join(f"{k} ({v})" for k, v in plan_bound.items()) or "none"
    return [f"{trial.dataset} plan: {'; '.join(parts)}", f"{trial.dataset} sanity checks the plan cannot run: {cannot}"]
