"""ER-Classifier against its control, Madry's PGD training, with the current defaults; and the
critic's ``critic_steps`` 1 vs 5 (``make bench``; ``--quick`` for a short run).

The baseline is in the same run: ``madry`` with the same network, recipe, data, seeds and
epochs. ``er`` runs with ``critic_steps`` 1 (Algorithm 1) and 5 (WGAN's ratio). Every run
trains on the training set minus the validation split (``er_core.validation``); the choice of
a setting is read on that split (``val_pgd``, PGD-10 at the training ε), and the test figures
(PGD-40 on the test images) are reported beside it, never used to choose.

Settings: ``--dataset digits`` (the whole set; train ε 0.1 and 0.3, the latter MNIST's ratio)
or ``--dataset mnist`` (a CPU slice: the first ``--train-n`` training images outside the
validation split, ``--eval-n`` test images). Per epoch it logs ``reg_grad_ratio`` and
``critic_live`` of the ER runs. Output: one JSON line per run in ``--out`` (written as runs
finish) and a summary table: per (ε, config) the mean ± std over seeds and the paired
ER − Madry difference per seed.

Usage: ``python bench/bench_er_vs_madry.py [--quick] [--dataset digits|mnist] [--jobs 2]``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

CONFIGS = {
    "madry": ("madry", {}),
    "er_cs1": ("er", {"critic_steps": 1}),
    "er_cs5": ("er", {"critic_steps": 5}),
}


def one_run(dataset: str, config: str, train_eps: float, seed: int, epochs: int, batch: int, train_n,
            eval_n: int, val_n: int, test_eps: tuple, pgd_steps, extra: dict) -> dict:
    import torch

    torch.set_num_threads(1)
    from er_core.attacks import make as make_attack
    from er_core.data import load
    from er_core.methods import make
    from er_core.train import fit
    from er_core.validation import validation_metrics, with_validation

    data = with_validation(load(dataset), val_n)
    if train_n is not None:
        data = dataclasses.replace(data, x_train=data.x_train[:train_n], y_train=data.y_train[:train_n])
    method_name, hp = CONFIGS[config]
    hp = {**hp, **extra, "init_seed": seed, "train_eps": train_eps}
    if pgd_steps is not None:
        hp["pgd_steps"] = pgd_steps
    method = make(method_name, dataset, **hp)
    epochs_log = []
    started = time.perf_counter()

    def on_epoch(done, metrics):
        val = validation_metrics(method.model, data, train_eps, seed, done)
        epochs_log.append({k: round(float(metrics[k]), 4) for k in ("reg_grad_ratio", "critic_live", "critic_w")
                           if k in metrics} | {k: round(v, 4) for k, v in val.items()})

    fit(method, data, epochs=epochs, batch_size=batch, seed=seed, on_epoch=on_epoch)
    x, y = data.x_test[:eval_n], data.y_test[:eval_n]
    test = {}
    method.model.eval()
    for eps in test_eps:
        attack = make_attack("pgd", eps=eps, steps=40, seed=seed)
        x_adv = attack(method.model, x, y).x_adv
        with torch.no_grad():
            test[f"pgd40_{eps}"] = float((method.model(x_adv).argmax(1) == y).float().mean())
    with torch.no_grad():
        test["clean"] = float((method.model(x).argmax(1) == y).float().mean())
    return {"dataset": dataset, "config": config, "train_eps": train_eps, "seed": seed, "epochs": epochs,
            "train_images": len(data.x_train), "val_n": val_n, "eval_n": len(y), "extra": extra,
            "seconds": round(time.perf_counter() - started, 1), "final_val_pgd": epochs_log[-1].get("val_pgd"),
            "test": test, "per_epoch": epochs_log}


def summarise(results: list[dict]) -> str:
    lines = []
    keys = sorted({(r["train_eps"], json.dumps(r["extra"], sort_keys=True)) for r in results})
    for train_eps, extra in keys:
        group = [r for r in results if r["train_eps"] == train_eps and json.dumps(r["extra"], sort_keys=True) == extra]
        lines.append(f"\ntrain ε {train_eps} {extra if extra != '{}' else ''}"
                     f" ({group[0]['train_images']} training images, {group[0]['epochs']} epochs, "
                     f"val {group[0]['val_n']}, test {group[0]['eval_n']})")
        metrics = ["final_val_pgd", *sorted(group[0]["test"])]
        lines.append("| config | " + " | ".join(metrics) + " | last reg_grad_ratio | last critic_live |")
        lines.append("|" + " --- |" * (len(metrics) + 3))
        by_config = {}
        for r in group:
            by_config.setdefault(r["config"], {})[r["seed"]] = r
        for config, runs in by_config.items():
            cells = []
            for m in metrics:
                values = [(r[m] if m == "final_val_pgd" else r["test"][m]) for r in runs.values()]
                cells.append(fmt(values))
            last = [r["per_epoch"][-1] for r in runs.values()]
            cells.append(fmt([e.get("reg_grad_ratio") for e in last]))
            cells.append(fmt([e.get("critic_live") for e in last]))
            lines.append(f"| {config} | " + " | ".join(cells) + " |")
        madry = by_config.get("madry", {})
        for config, runs in by_config.items():
            if config == "madry":
                continue
            for m in metrics:
                diffs = [(runs[s][m] if m == "final_val_pgd" else runs[s]["test"][m])
                         - (madry[s][m] if m == "final_val_pgd" else madry[s]["test"][m])
                         for s in sorted(runs) if s in madry]
                if diffs:
                    lines.append(f"  {config} − madry, {m}: per seed {', '.join(f'{d:+.3f}' for d in diffs)}")
    return "\n".join(lines)


def fmt(values) -> str:
    values = [v for v in values if v is not None]
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{statistics.mean(values):.3f} ± {statistics.stdev(values):.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="2 epochs, one seed, train ε 0.1 only")
    ap.add_argument("--dataset", default="digits", choices=("digits", "mnist"))
    ap.add_argument("--epochs", type=int)
    ap.add_argument("--seeds", type=int, nargs="+")
    ap.add_argument("--train-eps", type=float, nargs="+")
    ap.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    ap.add_argument("--train-n", type=int, help="training images (mnist slice)")
    ap.add_argument("--eval-n", type=int)
    ap.add_argument("--val-n", type=int)
    ap.add_argument("--pgd-steps", type=int, help="PGD steps of the training examples (default: the dataset's)")
    ap.add_argument("--encoder-fc", type=int, help="fc width of the small CNN (default: the dataset's)")
    ap.add_argument("--batch", type=int)
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default="bench_er_vs_madry.jsonl")
    args = ap.parse_args(argv)
    digits = args.dataset == "digits"
    epochs = args.epochs or (2 if args.quick else (12 if digits else 3))
    seeds = args.seeds or ([0] if args.quick else [0, 1, 2])
    train_eps = args.train_eps or ([0.1] if args.quick or not digits else [0.1, 0.3])
    if not digits and not args.train_eps:
        train_eps = [0.3]
    batch = args.batch or (32 if digits else 128)
    val_n = args.val_n if args.val_n is not None else (200 if digits else 5000)
    eval_n = args.eval_n or (360 if digits else 500)
    train_n = args.train_n if args.train_n else (None if digits else 5000)
    test_eps = (0.1, 0.2, 0.3) if digits else (0.1, 0.3)
    extra = {} if args.encoder_fc is None else {"encoder_fc": args.encoder_fc}
    jobs = [(args.dataset, c, e, s, epochs, batch, train_n, eval_n, val_n, test_eps, args.pgd_steps, extra)
            for e in train_eps for s in seeds for c in args.configs]
    out = Path(args.out)
    results = []
    with ProcessPoolExecutor(max_workers=args.jobs) as pool, out.open("a") as sink:
        for result in pool.map(one_run, *zip(*jobs)):
            results.append(result)
            sink.write(json.dumps(result) + "\n")
            sink.flush()
            print(f"{result['config']} ε {result['train_eps']} seed {result['seed']}: val_pgd "
                  f"{result['final_val_pgd']} test {result['test']} ({result['seconds']} s)", flush=True)
    print(summarise(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
