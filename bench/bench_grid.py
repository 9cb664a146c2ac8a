"""Benchmark: the smoke grid through Ray Tune versus the same trials in a plain loop.

    .venv/bin/python bench/bench_grid.py [--cpus 1] [--out bench/out/grid.json]

1. Overhead: the ``smoke`` preset of jobs/full_grid.py (3 digits trials: 2 epochs, 6
   (attack, ε) pairs × 2 batches of 20) run (a) in one process as a plain loop over the
   trials calling the trainable's own steps (train with a checkpoint file per epoch,
   evaluate batch by batch into the same parquet store, trial row), and (b) through
   ``grid.run.run`` on a local Ray started beforehand with ``--cpus`` CPUs (its start-up is
   excluded from the timing). With ``--cpus 1`` both run one trial at a time on one thread,
   so the ratio is Ray Tune's own cost (actor start per trial, reporting, checkpoint
   persistence, experiment-state syncing); with 2 CPUs Ray also runs trials in parallel.
   Goal: ratio ≤ 1.10. Also reported: the time spent inside trials (Tune's time_total_s),
   which separates the per-report cost from the fixed cost of starting the trial worker
   process (torch import, a few seconds per grid, not per trial: actors are reused).
2. Resume cost: the same grid with ``max_failures=0``, its trial processes SIGKILLed after
   the 4th evaluation batch each stores (``ER_GRID_TEST_KILL_AFTER_BATCHES``), then
   ``grid.run.resume`` (fresh Ray session without the hook). Reported: evaluation batches
   stored before the kill, batches the resume computed, batches recomputed (files from
   before the kill rewritten: mtime changed), epochs retrained, resume wall time.

Wall-clock figures on a shared 2-core machine are noisy (±10%); run it when the machine
is otherwise idle and compare ratios, not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "jobs"))


def plain_loop(spec, storage: Path) -> float:
    """Every trial of ``spec`` in this process, through the trainable's steps; seconds."""
    import torch

    import er_core.methods
    from grid.stages import evaluation as E
    from grid.stages import trial_row as R
    from grid.trial import trainable as T
    from grid.trial.checkpoints import TrainState, save_state, weights_hash
    from grid.store import ResultStore

    store = ResultStore(str(storage / spec.experiment / "results"))
    started = time.perf_counter()
    for trial in spec.expand():
        torch.set_num_threads(max(1, int(trial.resources["cpu"])))
        method = er_core.methods.make(trial.method, trial.dataset, device="cpu", **trial.method_hyperparams())
        data = T.load_trial_data(trial, "cpu")
        checkpoints = storage / spec.experiment / trial.name
        checkpoints.mkdir(parents=True)

        def save(epoch_done, metrics, state, method=method, checkpoints=checkpoints):
            directory = checkpoints / f"checkpoint_{epoch_done - 1:06d}"
            directory.mkdir()
            save_state(method, state, directory)

        state = T.train(method, data, trial, TrainState(), save)
        digest = weights_hash(method.model)
        t0 = time.perf_counter()
        E.evaluate(method.model, data, trial, store, digest, lambda done, total: None)
        R.write_trial_row(store, trial, state, digest, R.subset_accuracy(method.model, data, trial), "cpu",
                          wall_seconds=state.train_seconds + time.perf_counter() - t0, hyperparams=method.hyperparams)
    return time.perf_counter() - started


def through_ray(spec, storage: Path) -> tuple[float, float]:
    """Seconds for ``run`` and the sum of Tune's per-trial ``time_total_s`` (time inside the
    trainable, reports and checkpoint persistence included; worker start and scheduling not)."""
    from grid.run import run

    started = time.perf_counter()
    summary = run(spec, storage=str(storage))
    elapsed = time.perf_counter() - started
    assert summary.ok, summary
    in_trials = 0.0
    for result_file in (storage / spec.experiment).glob("*/result.json"):
        last = result_file.read_text().splitlines()[-1]
        in_trials += json.loads(last)["time_total_s"]
    return elapsed, in_trials


def resume_cost(spec, storage: Path, cpus: int, kill_after: int = 4) -> dict:
    import ray

    from grid.run import resume, run
    from grid.store import ResultStore

    path = storage / spec.experiment
    # The hook reaches trial processes through this session's runtime env only.
    ray.shutdown()
    ray.init(num_cpus=cpus, include_dashboard=False,
             runtime_env={"env_vars": {"ER_GRID_TEST_KILL_AFTER_BATCHES": str(kill_after)}})
    killed = run(spec, storage=str(storage))
    ray.shutdown()
    store = ResultStore(str(path / "results"))
    before = {p: Path(p).stat().st_mtime_ns for p in store.files()}
    ray.init(num_cpus=cpus, include_dashboard=False)
    started = time.perf_counter()
    summary = resume(str(path))
    seconds = time.perf_counter() - started
    assert summary.ok, summary
    after = {p: Path(p).stat().st_mtime_ns for p in store.files()}
    retrained = 0
    for result_file in path.glob("*/result.json"):
        reports = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        pids = list(dict.fromkeys(r["pid"] for r in reports))
        retrained += sum(1 for r in reports if r.get("phase") == "train" and r["pid"] != pids[0])
    total = sum(len(t.eval_batches()) for t in spec.expand())
    return {
        "trials_errored_by_kill": killed.errored,
        "batches_total": total,
        "batches_stored_before_kill": len(before),
        "batches_computed_by_resume": len(after) - len(before),
        "batches_recomputed": sum(after[p] != m for p, m in before.items()),
        "epochs_retrained": retrained,
        "resume_seconds": round(seconds, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cpus", type=int, default=1, help="CPUs of the local Ray (1: sequential, like the loop)")
    parser.add_argument("--repeat", type=int, default=2,
                        help="alternate loop and Ray runs this many times; report the fastest of each")
    parser.add_argument("--out", default=str(REPO / "bench" / "out" / "grid.json"))
    parser.add_argument("--quick", action="store_true", help="one repeat instead of --repeat")
    args = parser.parse_args()
    if args.quick:
        args.repeat = 1
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")

    import ray
    import torch

    from full_grid import SMOKE
    from grid.spec import GridSpec

    torch.set_num_threads(1)
    spec = GridSpec.from_dict(dict(SMOKE, max_failures=0))
    with tempfile.TemporaryDirectory(prefix="bench_grid_") as tmp:
        tmp = Path(tmp)
        t0 = time.perf_counter()
        ray.init(num_cpus=args.cpus, include_dashboard=False)
        ray_start_s = time.perf_counter() - t0
        # Alternated, fastest of each: the machine's other load hits both sides alike.
        loops, rays, in_trials = [], [], []
        for i in range(args.repeat):
            loops.append(plain_loop(spec, tmp / f"loop{i}"))
            seconds, inside = through_ray(spec, tmp / f"ray{i}")
            rays.append(seconds)
            in_trials.append(inside)
        loop_s, ray_s = min(loops), min(rays)
        resume = resume_cost(spec, tmp / "resume", args.cpus)
        ray.shutdown()

    figures = {
        "grid": "smoke preset (3 digits trials)", "ray_cpus": args.cpus,
        "plain_loop_seconds": round(loop_s, 1), "ray_seconds": round(ray_s, 1),
        "all_loop_seconds": [round(v, 1) for v in loops], "all_ray_seconds": [round(v, 1) for v in rays],
        "ray_in_trial_seconds": [round(v, 1) for v in in_trials],
        "load_average_1min": os.getloadavg()[0],
        "ray_startup_seconds_excluded": round(ray_start_s, 1),
        "ratio_ray_over_loop": round(ray_s / loop_s, 3), **resume,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(figures, indent=1) + "\n")
    width = max(len(k) for k in figures)
    for key, value in figures.items():
        print(f"{key:<{width}}  {value}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
