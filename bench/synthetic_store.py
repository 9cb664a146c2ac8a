"""A synthetic results store of the paper grid's shape, written through the project's own writer.

``python bench/synthetic_store.py DEST --size 1``: the experiment folder ``DEST/paper`` of
``jobs/full_grid.py``'s paper preset with one seed per dataset (60 trials: 15 configurations on
each of MNIST, CIFAR10, STL10, Tiny ImageNet), every table a finished trial writes: one
examples file of 250 rows per (attack, ε, batch) of its evaluation plan (1,125,000 rows in
all), the AutoAttack batches' notes, the codes (z, natural and under PGD), the trial row and
the sanity flags, each committed through ``ResultStore`` exactly as the trainable commits it,
plus ``grid_spec.json`` and each trial's last checkpoint sidecar (so ``er-grid status`` reads
every trial DONE). The full preset (three seeds on MNIST and CIFAR10) is 120 trials, 2.1× this.

``--size`` scales the store: below 1 the first ``size × 60`` trials are written (round-robin
over the datasets) and the others are planned without results; above 1 each dataset gets
``size`` seeds (``--size 4``: 240 trials, 4.5 million rows). Values are drawn from a fixed
seed (accuracy falling with ε, realistic fingerprint strings), so two builds are identical
apart from timestamps.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "jobs"))

from full_grid import PAPER, PAPER_DATASETS  # noqa: E402

from er_core.dataset_info import info  # noqa: E402
from grid.common.locations import experiment_path, results_location  # noqa: E402
from grid.experiment.spec_record import record_spec  # noqa: E402
from grid.spec import GridSpec  # noqa: E402
from grid.stages.evaluation import write_notes  # noqa: E402
from grid.stages.sanity import write_flags  # noqa: E402
from grid.store import ResultStore  # noqa: E402
from grid.store.layout import codes_path  # noqa: E402
from grid.store.rows import rows_to_table, without_partitions  # noqa: E402
from grid.store.schemas import CODES_SCHEMA  # noqa: E402

TRIALS_AT_SIZE_1 = 60
LIBRARIES = json.dumps({"numpy": "2.3.4", "pyarrow": "26.0.1", "pyautoattack": "0.2.1", "ray": "2.49.2",
                        "scikit-learn": "1.7.2", "scipy": "1.16.3", "torch": "2.9.0"}, sort_keys=True,
                       separators=(",", ":"))
# What attack_fingerprint records beside the attack's own options (same length as the real ones).
FINGERPRINT_EXTRA = {"library": {"pyautoattack": "0.2.1", "torch": "2.9.0+cu128"}, "input_range": [0.0, 1.0]}


def paper_spec(storage: str, size: float) -> GridSpec:
    seeds = list(range(max(1, math.ceil(size))))
    return GridSpec.from_dict(dict(PAPER, storage_path=storage, data_root=None,
                                   seeds={d: seeds for d in PAPER_DATASETS}))


def chosen_trials(spec: GridSpec, size: float) -> list:
    """The trials written at ``size``: all of them from 1 up, else the first ``size × 60``
    taking the datasets in turn (so every dataset's shape is in a small store too)."""
    trials = spec.expand()
    if size >= 1:
        return trials
    by_dataset = {d: [t for t in trials if t.dataset == d] for d in PAPER_DATASETS}
    turns = [t for group in zip(*by_dataset.values()) for t in group]
    return turns[:max(1, round(size * TRIALS_AT_SIZE_1))]


def example_rows(trial, attack: str, eps: float, options: dict, batch: list, rng) -> list[dict]:
    """One batch's rows: accuracy falling with ε, distortions within ε, fingerprint strings."""
    n = len(batch)
    classes = info(trial.dataset).num_classes
    label = rng.integers(0, classes, n)
    clean = rng.random(n) < 0.92
    robust_share = 0.3 if attack == "cw_l2" else max(0.02, 0.9 - 12 * eps)
    adv = clean & (rng.random(n) < robust_share)
    pred_clean = np.where(clean, label, (label + 1) % classes)
    pred_adv = np.where(adv, label, (label + 3) % classes)
    dims = math.prod(info(trial.dataset).shape)
    linf = np.where(adv, 0.0, eps if attack != "cw_l2" else 0.2) * rng.random(n)
    l2 = linf * math.sqrt(dims) * rng.random(n)
    config = json.dumps({"attack": attack, "eps": eps, **options, **FINGERPRINT_EXTRA}, sort_keys=True,
                        separators=(",", ":"))
    queries = rng.integers(1, options.get("max_queries", 10_000), n) if attack == "rays" else np.full(n, -1)
    gradient = None if attack == "rays" else False
    common = {"train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed, "epochs": trial.epochs,
              "norm": "L2" if attack == "cw_l2" else "Linf", "attack_config": config,
              "checkpoint_hash": trial.trial_id * 6 + "abcd", "eval_subset": f"n={trial.eval_n},seed={trial.eval_seed}",
              "library_versions": LIBRARIES, "gradient_failed": gradient, "randomized": trial.method == "rse"}
    seconds = rng.random(n) * 0.05
    return [{**common, "sample_idx": int(batch[i]), "label": int(label[i]), "pred_clean": int(pred_clean[i]),
             "pred_adv": int(pred_adv[i]), "correct_clean": bool(clean[i]), "correct_adv": bool(adv[i]),
             "l2": float(l2[i]), "l2_rms": float(l2[i] / math.sqrt(dims)), "linf": float(linf[i]),
             "queries": int(queries[i]), "seconds": float(seconds[i])} for i in range(n)]


def write_trial(store: ResultStore, experiment: str, trial, rng) -> int:
    """Every file a finished trial commits; returns example rows written."""
    indices = np.arange(trial.eval_n) * 7 % info(trial.dataset).test_size
    batches = [indices[i:i + trial.eval_batch_size] for i in range(0, trial.eval_n, trial.eval_batch_size)]
    rows = 0
    for item in trial.eval_plan:
        for b, batch in enumerate(batches):
            if item.attack == "autoattack":
                write_notes(store, trial, item.attack, float(item.eps), b, [])
            store.write_batch(example_rows(trial, item.attack, float(item.eps), dict(item.options), batch, rng),
                              experiment=trial.experiment, dataset=trial.dataset, method=trial.method,
                              trial_id=trial.trial_id, attack=item.attack, eps=float(item.eps), batch=b)
            rows += len(batch)
    write_codes(store, trial, indices, rng)
    store.write_trial(trial_row(trial))
    write_flags(store, trial, [])
    sidecar = Path(experiment) / trial.name / f"checkpoint_{trial.epochs - 1:06d}" / "epoch.json"
    sidecar.parent.mkdir(parents=True, exist_ok=True)
    sidecar.write_text(json.dumps({"epoch": trial.epochs, "train_seconds": 3500.0}))
    return rows


def trial_row(trial) -> dict:
    """The trial row as the trial-row stage writes it: per-epoch losses (with validation readings
    where the trial holds a validation split), the evaluated epoch, the recipe."""
    losses = [{"epoch": e + 1, "loss": 1.0 / (e + 1), "seconds": 110.0,
               **({"val_clean": 0.9, "val_pgd": 0.4 + 0.01 * e, "val_eps": 0.3} if trial.validation_n else {})}
              for e in range(trial.epochs)]
    return {"trial_id": trial.trial_id, "experiment": trial.experiment, "dataset": trial.dataset,
            "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
            "epochs": trial.epochs, "clean_accuracy": 0.92, "losses_json": json.dumps(losses),
            "wall_seconds": 3600.0, "device": "cuda:0 (NVIDIA H100 80GB HBM3)", "checkpoint_hash": trial.trial_id * 6,
            "recipe": info(trial.dataset).recipe, "hyperparams_json": json.dumps({"recipe": info(trial.dataset).recipe}),
            "validation_n": trial.validation_n, "evaluate": trial.evaluate, "evaluated_epoch": trial.epochs}


def write_codes(store: ResultStore, trial, indices, rng) -> None:
    k = info(trial.dataset).code_dim
    codes = rng.standard_normal((2, len(indices), k)).astype(np.float32)
    config = json.dumps({"attack": "pgd", "eps": 0.1, "steps": 40, "eps_rule": {"rule": "half"}}, sort_keys=True)
    rows = [{"experiment": trial.experiment, "trial_id": trial.trial_id, "dataset": trial.dataset,
             "method": trial.method, "train_eps": trial.train_eps, "lam": trial.lam, "seed": trial.seed,
             "sample_idx": int(idx), "label": int(idx % 10), "kind": kind, "pred": int(idx % 10),
             "code": codes[j, i].tolist(), "attack_config": config, "checkpoint_hash": trial.trial_id * 6}
            for j, kind in enumerate(("natural", "adversarial")) for i, idx in enumerate(indices)]
    store.write_atomic(without_partitions(rows_to_table(rows, CODES_SCHEMA, fill={})), codes_path(store, trial))


def build(dest: str, size: float, quiet: bool = False) -> dict:
    """Write the store of ``size`` under ``dest`` (an empty or absent folder); returns its shape."""
    spec = paper_spec(dest, size)
    experiment = experiment_path(dest, spec.experiment)
    if Path(experiment).exists():
        raise SystemExit(f"{experiment} exists: give an empty destination")
    record_spec(spec, experiment)
    store = ResultStore(results_location(experiment))
    rng = np.random.default_rng(0)
    started, rows = time.perf_counter(), 0
    trials = chosen_trials(spec, size)
    for i, trial in enumerate(trials, start=1):
        rows += write_trial(store, experiment, trial, rng)
        if not quiet:
            print(f"\r{i}/{len(trials)} trials, {rows:,} rows, {time.perf_counter() - started:.0f} s", end="",
                  file=sys.stderr, flush=True)
    if not quiet:
        print(file=sys.stderr)
    return {"experiment": experiment, "trials": len(trials), "planned": len(spec.expand()), "rows": rows,
            "seconds": time.perf_counter() - started}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dest")
    parser.add_argument("--size", type=float, default=1.0)
    args = parser.parse_args()
    print(json.dumps(build(args.dest, args.size)))


if __name__ == "__main__":
    main()
