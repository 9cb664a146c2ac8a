"""The results store at the paper grid's size: every reading command timed beside duckdb.

``python bench/bench_store.py [--sizes 0.125,0.5,1,4] [--repeat 3] [--dir /tmp/store-bench]``
builds (once, kept under ``--dir``) a synthetic store of the paper preset's shape at each size
through the project's own writer (``bench/synthetic_store.py``: size 1 is 60 trials, 1,125,000
example rows, every table a finished trial writes), then times, each in a fresh process:

- ``er-grid status``, ``er-grid query`` (whole store, and ``--dataset mnist --attack pgd``),
  ``er-grid report`` (without and with ``--figures``) and ``grid.store.load``;
- the baselines on the same parquet files in the same run, alternated with ours: duckdb
  computing the same robust-accuracy table (per trial, then mean and std over seeds, with the
  per-example worst case), duckdb's filtered table, and pyarrow's dataset read for ``load``.

Each row gives wall seconds and peak RSS (``wait4``'s ``ru_maxrss`` of that process alone), the
ratio to its baseline, and the growth from the previous size. The baselines read every parquet
file unverified; ours read only committed files and verify them. The first command after a
build runs with no cached verdicts ("cold"); the repeats find them (``grid.store.verdicts``).
``--quick``: one small store (2 trials) in a temporary folder, one repeat, for ``make bench``.
``--src DIR``: run the commands from another checkout (the "before" column of a change).
The machine is shared: the load average is printed with the table, and each of ours is
timed right after its baseline.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
ROBUST_SQL = """
WITH rows AS (
  SELECT trial_id, dataset, method, train_eps, lam, attack, norm, eps, sample_idx,
         correct_clean AND correct_adv AS robust, correct_clean AS clean
  FROM read_parquet('{root}/examples/**/*.parquet', hive_partitioning = true) {where}),
attacks_at AS (SELECT trial_id, norm, eps, count(DISTINCT attack) AS k FROM rows GROUP BY ALL),
worst AS (
  SELECT r.trial_id, any_value(dataset) AS dataset, any_value(method) AS method,
         any_value(train_eps) AS train_eps, any_value(lam) AS lam, 'worst_case' AS attack, r.norm, r.eps,
         bool_and(robust) AS robust, any_value(clean) AS clean
  FROM rows r JOIN attacks_at a USING (trial_id, norm, eps) WHERE a.k >= 2
  GROUP BY r.trial_id, r.norm, r.eps, r.sample_idx HAVING count(DISTINCT r.attack) = any_value(a.k)),
per_trial AS (
  SELECT dataset, method, train_eps, lam, attack, norm, eps, trial_id,
         avg(robust::INT) AS r, avg(clean::INT) AS c, count(*) AS n
  FROM (SELECT trial_id, dataset, method, train_eps, lam, attack, norm, eps, robust, clean FROM rows
        UNION ALL SELECT trial_id, dataset, method, train_eps, lam, attack, norm, eps, robust, clean FROM worst)
  GROUP BY ALL)
SELECT dataset, method, attack, norm, eps, train_eps, lam, avg(r), stddev_samp(r), avg(c), stddev_samp(c),
       count(*) AS runs, sum(n) AS n
FROM per_trial GROUP BY ALL ORDER BY ALL
"""
DUCKDB = ("import duckdb, sys; con = duckdb.connect(); con.execute('PRAGMA disable_progress_bar'); "
          "print(len(con.sql(sys.argv[1]).fetchall()))")
PYARROW_LOAD = ("import sys, pyarrow.dataset as ds; "
                "print(len(ds.dataset(sys.argv[1] + '/examples', partitioning='hive').to_table().to_pandas()))")
OURS_LOAD = "import sys; from grid.store import load; print(len(load(sys.argv[1])))"
FILTER = {"dataset": "mnist", "attack": "pgd"}
SOURCE_ENV = "BENCH_STORE_SOURCE"  # the checkout measured (--src), passed to measure() with the environment


def duckdb_argv(results: str, filtered: bool) -> list[str]:
    where = " AND ".join(f"{k} = '{v}'" for k, v in FILTER.items()) if filtered else ""
    return [sys.executable, "-c", DUCKDB, ROBUST_SQL.format(root=results, where=f"WHERE {where}" if where else "")]


def cases(experiment: str, results: str, figures: str, quick: bool) -> list[tuple[str, list, list]]:
    """(name, our argv, baseline argv) of every measured command."""
    cli = [sys.executable, "-m", "grid.cli.main"]
    whole, filtered = duckdb_argv(results, False), duckdb_argv(results, True)
    out = [
        ("status", [*cli, "status", experiment], whole),
        ("query", [*cli, "query", experiment], whole),
        ("query --dataset mnist --attack pgd",
         [*cli, "query", experiment, *[a for k, v in FILTER.items() for a in (f"--{k}", v)]], filtered),
        ("report", [*cli, "report", experiment], whole),
        ("report --figures", [*cli, "report", experiment, "--figures", figures], whole),
        ("load (vs pyarrow)", [sys.executable, "-c", OURS_LOAD, experiment],
         [sys.executable, "-c", PYARROW_LOAD, results]),
    ]
    return [c for c in out if not (quick and c[0] == "report --figures")]


def measure(argv: list, env: dict) -> tuple[float, float]:
    """(wall seconds, peak RSS in MB) of one process; its failure stops the benchmark. It runs in
    the checkout whose code is measured (``python -m`` and ``-c`` put the working folder first)."""
    started = time.perf_counter()
    process = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               cwd=env.get(SOURCE_ENV, BENCH_DIR.parent))
    _pid, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"failed ({os.waitstatus_to_exitcode(status)}): {' '.join(argv[:4])}…\n"
                         f"{process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return seconds, usage.ru_maxrss / 1024


def built_store(directory: Path, size: float) -> tuple[str, dict]:
    """The experiment folder of the store of ``size`` under ``directory``, built if absent.

    Built in a child process: a child's peak RSS starts from its parent's at the fork (Linux
    keeps the larger of the two across exec), so this process must stay small."""
    folder = directory / f"s{size:g}"
    marker = folder / "built.json"
    if not marker.exists():
        if folder.exists():
            raise SystemExit(f"{folder} holds an unfinished build: remove it")
        built = subprocess.run([sys.executable, str(BENCH_DIR / "synthetic_store.py"), str(folder), "--size", str(size)],
                               check=True, capture_output=True, text=True, cwd=BENCH_DIR.parent)
        marker.write_text(built.stdout.strip().splitlines()[-1])
    shape = json.loads(marker.read_text())
    return shape["experiment"], shape


def bench_size(directory: Path, size: float, repeat: int, env: dict, quick: bool) -> dict:
    experiment, shape = built_store(directory, size)
    results = f"{experiment}/results"
    print(f"\nsize {size:g}: {shape['trials']} of {shape['planned']} planned trials, {shape['rows']:,} example rows "
          f"(built in {shape['seconds']:.0f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
    cache = tempfile.mkdtemp(prefix="verdicts-", dir=directory)
    env = {**env, "XDG_CACHE_HOME": cache}
    with tempfile.TemporaryDirectory(dir=directory) as figures:
        measured = {}
        cold = measure(cases(experiment, results, figures, quick)[0][1], env)
        print(f"  status, no cached verdicts: {cold[0]:.1f} s, {cold[1]:.0f} MB", flush=True)
        for name, ours, baseline in cases(experiment, results, figures, quick):
            runs = []
            for _ in range(repeat):  # baseline and ours alternated, so drifting load hits both
                runs.append((measure(baseline, env), measure(ours, env)))
            base_s = statistics.median(b[0] for b, _ in runs)
            ours_s = statistics.median(o[0] for _, o in runs)
            measured[name] = {"ours_s": ours_s, "ours_mb": max(o[1] for _, o in runs), "base_s": base_s,
                              "base_mb": max(b[1] for b, _ in runs)}
            m = measured[name]
            print(f"  {name:<36} {m['ours_s']:6.1f} s {m['ours_mb']:6.0f} MB | baseline {m['base_s']:6.1f} s "
                  f"{m['base_mb']:6.0f} MB | ratio {m['ours_s'] / m['base_s']:4.1f}×", flush=True)
    print(f"  load average after: {os.getloadavg()[0]:.1f}")
    return {"size": size, "rows": shape["rows"], "cold_status": cold, "commands": measured}


def print_table(all_sizes: list[dict]) -> None:
    print("\ncommand | size | rows | ours s | duckdb/pyarrow s | ratio | ours peak RSS MB | growth (time, RSS) vs previous size")
    print("--- | --- | --- | --- | --- | --- | --- | ---")
    for name in all_sizes[0]["commands"]:
        previous = None
        for entry in all_sizes:
            m = entry["commands"][name]
            growth = "" if previous is None else \
                f"×{m['ours_s'] / previous['ours_s']:.1f}, ×{m['ours_mb'] / previous['ours_mb']:.2f}"
            print(f"{name} | {entry['size']:g} | {entry['rows']:,} | {m['ours_s']:.1f} | {m['base_s']:.1f} | "
                  f"{m['ours_s'] / m['base_s']:.1f}× | {m['ours_mb']:.0f} | {growth}")
            previous = m


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.125,0.5,1,4", help="store sizes, 1 = the paper grid (60 trials)")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--dir", default="/tmp/store-bench", help="where the stores are built and kept")
    parser.add_argument("--src", help="run the commands from this checkout instead of this one")
    parser.add_argument("--quick", action="store_true", help="one 2-trial store in a temporary folder, once")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")])
        env[SOURCE_ENV] = str(Path(args.src).resolve())
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; commands from {args.src or BENCH_DIR.parent}")
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            print_table([bench_size(Path(tmp), 1 / 30, 1, env, quick=True)])
        return 0
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    print_table([bench_size(directory, float(s), args.repeat, env, quick=False) for s in args.sizes.split(",")])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
