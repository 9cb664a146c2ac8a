"""The paper's MNIST setting on one GPU in ≤ 8 minutes of wall time, start-up included.

    python jobs/fidelity.py [--preset smoke] [--dry-run] [--storage DIR|URI]      # Ray Tune grid
    python jobs/fidelity.py --no-ray [--preset smoke] [--out DIR] [--workers N] [--device cuda|cpu]

``paper`` (default): MNIST, the methods none, madry, trades, er, er_minus, e_cla, train ε 0.3,
λ 5 (the joint-form default of ``jobs/full_grid.py``), batch 128, evaluated on the fixed 1,000
test examples with PGD-40 at ε 0/0.1/0.2/0.3/0.5 (0 and 0.5 for the sanity checks ``eps0_mismatch``
and ``no_decay``), the convergence probe (PGD 100 × 5) and FGSM beside PGD at 0.3, AutoAttack and
RayS (10,000 queries) at 0.3. All six
trials share one GPU (1/8 each: fractions must divide 1, and Ray's 1e-4 granularity would leave
the sixth 1/6 unplaced) with 2 CPUs each (12 of a 16-core node).

Budget (H200 figures: an epoch of PGD-40 training ≈ 30 s with two trainings sharing the GPU;
AutoAttack on 1,000 examples of a robust model > 60 s): about 45 s start-up (Ray, CUDA, data);
the three adversarial trainings (madry, trades, er: 41 passes per batch) sharing the GPU at
≈ 40 s an epoch, so 4 epochs ≈ 160 s, while the clean trainings finish in seconds; then per
robust trial ≈ 2–3 min of evaluation (AutoAttack 60–90 s, RayS ≤ 10,000 forward passes of ≤ 1,000
images ≈ 30–60 s, PGD-40 at five ε ≈ 8 s, the probe's 500 passes ≈ 12 s). Total ≈ 45 + 160 + 200
≈ 6.7 min, leaving a minute for a slower card (estimated from the figures above, not yet
measured on a GPU with the probe). Four epochs are what fits; the ε warm-up of the adversarial
methods (their own per-dataset default) decides whether four epochs converge, and the sanity
flags (``collapsed``) say when they did not.

``smoke``: the same shape on ``digits`` on CPU (on a shared 2-core CPU: 101 s through Ray,
128 s with --no-ray; about 2 CPU-minutes, most of it AutoAttack): the six methods, train ε
0.1 (digits' scale), 3 epochs of batch 32, 40 examples, PGD-10 at 0/0.1/0.2/0.3/0.5, the
convergence probe, FGSM, AutoAttack and a 500-query RayS at 0.2 (at 0.1 AutoAttack's targeted stages run ~30× longer on a CPU).

After the run both paths print the same table (``er_core.fidelity_run.format_table``): the Ray
path reads it back from the store (``grid.report.fidelity``), ``--no-ray`` builds it from its own
processes and writes summary.json / summary.csv / examples.jsonl into ``--out``. The ``--no-ray``
path imports nothing from ``grid`` (it runs where only PyTorch is installed).

While it works: the Ray path prints Tune's progress table (``grid.run.watch``); ``--no-ray``
draws one progress bar over every trial's epochs and evaluation batches on a terminal, and
prints a line per finished trial (above the bar, or alone where stderr is not a terminal).
"""

import argparse
import os
import sys

from er_core.data import DATA_ROOT_ENV

METHODS = ["none", "madry", "trades", "er", "er_minus", "e_cla"]

PAPER = {
    "experiment": "fidelity",
    "datasets": ["mnist"],
    "methods": METHODS,
    "train_eps": {"mnist": [0.3]},
    "lams": [5.0],
    "epochs": 4,
    "batch_size": 128,
    "eval_plan": {"mnist": [
        # ε 0 (must equal clean), the paper's sweep points, and ε 0.5 (must fall to chance).
        {"attack": "pgd", "eps": [0.0, 0.1, 0.2, 0.3, 0.5], "options": {"steps": 40}},
        # The convergence probe (100 steps × 5 restarts) and one FGSM step beside PGD-40 at 0.3.
        {"attack": "pgd_probe", "eps": [0.3]},
        {"attack": "fgsm", "eps": [0.3]},
        {"attack": "autoattack", "eps": [0.3]},
        {"attack": "rays", "eps": [0.3], "options": {"max_queries": 10_000}},
    ]},
    "eval_n": 1000,
    # Two batches per (attack, ε): few kernel launches, and a kill redoes at most half.
    "eval_batch_size": 500,
    "resources": {"cpu": 2, "gpu": 0.125},
    "data_root": os.environ.get(DATA_ROOT_ENV),
    "max_failures": 1,
}

SMOKE = {
    "experiment": "fidelity_smoke",
    "datasets": ["digits"],
    "methods": METHODS,
    "train_eps": {"digits": [0.1]},
    "lams": [5.0],
    "epochs": 3,
    "batch_size": 32,
    "eval_plan": {"digits": [
        {"attack": "pgd", "eps": [0.0, 0.1, 0.2, 0.3, 0.5], "options": {"steps": 10}},
        {"attack": "pgd_probe", "eps": [0.2]},
        {"attack": "fgsm", "eps": [0.2]},
        {"attack": "autoattack", "eps": [0.2]},
        {"attack": "rays", "eps": [0.2], "options": {"max_queries": 500}},
    ]},
    "eval_n": 40,
    "eval_batch_size": 20,
    "resources": {"cpu": 1, "gpu": 0},
    "max_failures": 1,
}

PRESETS = {"paper": PAPER, "smoke": SMOKE}


def main_without_ray(argv) -> int:
    from er_core.fidelity_run import format_table, run_local

    parser = argparse.ArgumentParser(description="The fidelity grid through er_core alone (no Ray).")
    parser.add_argument("--no-ray", action="store_true", required=True)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="paper")
    parser.add_argument("--out", help="folder for summary.json/.csv and examples.jsonl (default ./fidelity-<preset>)")
    parser.add_argument("--workers", type=int, help="parallel trial processes (default: all trials on a GPU)")
    parser.add_argument("--device", choices=["cuda", "cpu"], help="default: cuda when available")
    args = parser.parse_args(argv)
    try:
        summaries = run_local(PRESETS[args.preset], args.out or f"fidelity-{args.preset}",
                              workers=args.workers, device=args.device)
    except ValueError as err:
        print(f"fidelity: error: {err}", file=sys.stderr)
        return 2
    print(format_table(summaries))
    return 0


def print_table(spec, summary) -> None:
    from grid.report.fidelity import fidelity_table
    from grid.run import results_location

    print(fidelity_table(results_location(summary.experiment_path), spec.experiment))


if __name__ == "__main__":
    argv = sys.argv[1:]
    if "--no-ray" in argv:
        sys.exit(main_without_ray(argv))
    from grid.cli.job import job_main

    sys.exit(job_main(PRESETS, default="paper", argv=argv, after_run=print_table))
