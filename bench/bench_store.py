"""The results store at the paper grid's size: every reading command timed beside duckdb.

``python bench/bench_store.py [--sizes 0.125,0.5,1,4] [--repeat 2] [--dir /tmp/store-bench]``
builds (once, kept under ``--dir``) a synthetic store of the paper preset's shape at each size
through the project's own writer (``bench/synthetic_store.py``: size 1 is 60 trials, 1,125,000
example rows, every table a finished trial writes; 4 is 240 trials, 4.5 million rows), then
times, each in a fresh process:

- ``er-grid status`` (and ``check_store`` alone, the store's part of it), ``er-grid query``
  (whole store, and ``--dataset mnist --attack pgd``), ``er-grid report`` (without and, once
  per size, with ``--figures``) and ``grid.store.load``;
- the baselines on the same parquet files in the same run, alternated with ours: duckdb
  computing the same robust-accuracy table (per trial, then mean and std over seeds, with the
  per-example worst case), duckdb's filtered table, and pyarrow's dataset read for ``load``.

Each row gives wall seconds (median of ``--repeat``) and peak RSS (``wait4``'s ``ru_maxrss`` of
that process alone), the ratio to its baseline, and the growth from the previous size. The
baselines read every parquet file unverified; ours read only committed files and verify them
(the sha256 of every file a reader decodes; ``grid.store.verdicts``). The first ``status``
after a build runs with no verdicts kept ("cold"); the others find them. Then the cost of one
commit against the number of entries its trial's record already holds.

``--quick``: one small store (2 trials) in a temporary folder, status, query and report once
each (``make bench``; about 30 s).
``--src DIR``: run the commands from another checkout (the "before" column of a change).
The machine is shared: the load average is printed beside the table, and each of ours runs
right after its baseline.
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
OURS_CHECK = ("import sys; from grid.store import ResultStore, check_store; "
              "print(len(check_store(ResultStore(sys.argv[1])).intact))")
# One trial's commits in a fresh store; prints the milliseconds of the commits at each count.
COMMITS = """
import json, sys, tempfile, time
from grid.store import ResultStore
counts = [int(c) for c in sys.argv[1].split(",")]
row = {"train_eps": None, "lam": None, "seed": 0, "epochs": 1, "norm": "Linf", "label": 1, "pred_clean": 1,
       "pred_adv": 1, "correct_clean": True, "correct_adv": True, "l2": 0.1, "l2_rms": 0.01, "linf": 0.1,
       "queries": -1, "seconds": 0.01, "attack_config": "{}", "checkpoint_hash": "abc", "eval_subset": "n=1000,seed=0",
       "library_versions": "{}", "gradient_failed": False, "randomized": False}
with tempfile.TemporaryDirectory() as root:
    store, out, seconds = ResultStore(root), {}, []
    for b in range(max(counts)):
        rows = [dict(row, sample_idx=b * 10 + i) for i in range(10)]
        started = time.perf_counter()
        store.write_batch(rows, experiment="e", dataset="digits", method="none", trial_id="t0", attack="pgd",
                          eps=0.1, batch=b)
        seconds.append(time.perf_counter() - started)
        if b + 1 in counts:
            window = sorted(seconds[-min(20, len(seconds)):])
            out[b + 1] = 1000 * window[len(window) // 2]
    print(json.dumps(out))
"""
FILTER = {"dataset": "mnist", "attack": "pgd"}
SOURCE_ENV = "BENCH_STORE_SOURCE"  # the checkout measured (--src), passed to measure() with the environment


def duckdb_argv(results: str, filtered: bool) -> list[str]:
    where = " AND ".join(f"{k} = '{v}'" for k, v in FILTER.items()) if filtered else ""
    return [sys.executable, "-c", DUCKDB, ROBUST_SQL.format(root=results, where=f"WHERE {where}" if where else "")]


def cases(experiment: str, results: str) -> list[tuple[str, list, list]]:
    """(name, our argv, baseline argv) of every command timed at each repeat."""
    cli = [sys.executable, "-m", "grid.cli.main"]
    whole, filtered = duckdb_argv(results, False), duckdb_argv(results, True)
    return [
        ("status", [*cli, "status", experiment], whole),
        ("check_store (status's store part)", [sys.executable, "-c", OURS_CHECK, results], whole),
        ("query", [*cli, "query", experiment], whole),
        ("query --dataset mnist --attack pgd",
         [*cli, "query", experiment, *[a for k, v in FILTER.items() for a in (f"--{k}", v)]], filtered),
        ("report", [*cli, "report", experiment], whole),
        ("load (vs pyarrow)", [sys.executable, "-c", OURS_LOAD, experiment],
         [sys.executable, "-c", PYARROW_LOAD, results]),
    ]


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


def line(name: str, m: dict) -> str:
    return (f"  {name:<36} {m['ours_s']:6.1f} s {m['ours_mb']:6.0f} MB | baseline {m['base_s']:6.1f} s "
            f"{m['base_mb']:6.0f} MB | ratio {m['ours_s'] / m['base_s']:4.1f}×")


def bench_size(directory: Path, size: float, repeat: int, env: dict, figures: bool, only: tuple = ()) -> dict:
    experiment, shape = built_store(directory, size)
    results = f"{experiment}/results"
    print(f"\nsize {size:g}: {shape['trials']} of {shape['planned']} planned trials, {shape['rows']:,} example rows "
          f"(built in {shape['seconds']:.0f} s); load average {os.getloadavg()[0]:.1f}", flush=True)
    with tempfile.TemporaryDirectory(prefix="verdicts-", dir=directory) as cache, \
            tempfile.TemporaryDirectory(dir=directory) as figures_dir:
        env = {**env, "XDG_CACHE_HOME": cache}
        measured = {}
        cold = measure(cases(experiment, results)[0][1], env)
        print(f"  status, no verdicts kept yet: {cold[0]:.1f} s, {cold[1]:.0f} MB", flush=True)
        for name, ours, baseline in cases(experiment, results):
            if only and not name.startswith(only):
                continue
            runs = []
            for _ in range(repeat):  # baseline and ours alternated, so drifting load hits both
                runs.append((measure(baseline, env), measure(ours, env)))
            measured[name] = {"ours_s": statistics.median(o[0] for _, o in runs),
                              "ours_mb": max(o[1] for _, o in runs),
                              "base_s": statistics.median(b[0] for b, _ in runs), "base_mb": max(b[1] for b, _ in runs)}
            print(line(name, measured[name]), flush=True)
        if figures:  # once: the t-SNE figures take minutes whatever the store's size
            base = measure(duckdb_argv(results, False), env)
            ours = measure([sys.executable, "-m", "grid.cli.main", "report", experiment, "--figures", figures_dir], env)
            measured["report --figures (once)"] = {"ours_s": ours[0], "ours_mb": ours[1], "base_s": base[0],
                                                   "base_mb": base[1]}
            print(line("report --figures (once)", measured["report --figures (once)"]), flush=True)
    print(f"  load average after: {os.getloadavg()[0]:.1f}")
    return {"size": size, "rows": shape["rows"], "cold_status": cold, "commands": measured}


def print_table(all_sizes: list[dict]) -> None:
    print("\ncommand | size | rows | ours s | baseline s | ratio | ours peak RSS MB | baseline MB | growth vs previous size "
          "(time, RSS)")
    print("--- | --- | --- | --- | --- | --- | --- | --- | ---")
    for name in dict.fromkeys(n for entry in all_sizes for n in entry["commands"]):
        previous = None
        for entry in all_sizes:
            m = entry["commands"].get(name)
            if m is None:
                continue
            growth = "" if previous is None else \
                f"×{m['ours_s'] / previous['ours_s']:.1f}, ×{m['ours_mb'] / previous['ours_mb']:.2f}"
            print(f"{name} | {entry['size']:g} | {entry['rows']:,} | {m['ours_s']:.1f} | {m['base_s']:.1f} | "
                  f"{m['ours_s'] / m['base_s']:.1f}× | {m['ours_mb']:.0f} | {m['base_mb']:.0f} | {growth}")
            previous = m


def commit_costs(env: dict, counts: list[int]) -> None:
    """The cost of one commit against the entries its trial's record already holds."""
    done = subprocess.run([sys.executable, "-c", COMMITS, ",".join(map(str, counts))], env=env, check=True,
                          capture_output=True, text=True, cwd=env.get(SOURCE_ENV, BENCH_DIR.parent))
    costs = json.loads(done.stdout.strip().splitlines()[-1])
    print("\none commit (10 rows; median of the last 20) against the entries of its trial's record: "
          + ", ".join(f"{n} entries {ms:.1f} ms" for n, ms in costs.items()))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="0.125,0.5,1,4", help="store sizes, 1 = the paper grid (60 trials)")
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default="/tmp/store-bench", help="where the stores are built and kept")
    parser.add_argument("--src", help="run the commands from this checkout instead of this one")
    parser.add_argument("--no-figures", action="store_true", help="leave out report --figures (minutes of t-SNE)")
    parser.add_argument("--only", default="", help="comma-separated command names (their start) to time, e.g. status,query")
    parser.add_argument("--quick", action="store_true", help="one 2-trial store in a temporary folder, once")
    args = parser.parse_args(argv)
    env = dict(os.environ)
    if args.src:
        env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")])
        env[SOURCE_ENV] = str(Path(args.src).resolve())
    print(f"{os.cpu_count()} CPUs; load average {os.getloadavg()[0]:.1f}; commands from {args.src or BENCH_DIR.parent}")
    if args.quick:
        with tempfile.TemporaryDirectory() as tmp:
            print_table([bench_size(Path(tmp), 1 / 30, 1, env, figures=False, only=("status", "check_store", "query",
                                                                                      "report"))])
        commit_costs(env, [10, 100])
        return 0
    directory = Path(args.dir)
    directory.mkdir(parents=True, exist_ok=True)
    only = tuple(n for n in args.only.split(",") if n)
    print_table([bench_size(directory, float(s), args.repeat, env, figures=not args.no_figures, only=only)
                 for s in args.sizes.split(",")])
    commit_costs(env, [10, 100, 200, 500, 1000, 2000])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
