"""Evaluation-attack cost on real MNIST (``make bench``; ``--quick`` for a short run).

For N samples of ``eval_indices('mnist', N)`` (default 1,000; ``--quick`` 100) on one model:
seconds and model queries for PGD-40, AutoAttack (standard), RayS (10k budget) and C&W-L2,
with the robust accuracy each leaves, in one table.

- Model: ``--checkpoint PATH`` (a ``method.state_dict()`` saved with torch.save) for
  ``--method``, else ``--method`` (default ``none``; ``madry`` costs ~41 passes per training
  image) trained here for ``--epochs`` (default 1) on ``--train-images`` MNIST training images.
- Queries: every attack runs on a counting wrapper of the model, so the column is the number of
  images the attack pushed through the model (a forward+backward counts once), whatever the
  attack reports itself; ``per-example (own)`` is the attack's own mean count where it keeps one.
- Robust accuracy at ``--eps`` (ℓ∞: PGD, AutoAttack, RayS). C&W is unbounded: its rows give
  the accuracy left at any ℓ2 and under the paper's RMS ℓ2 ≤ 0.005 (Table 2, MNIST) and the
  median RMS ℓ2 of its successes.

Usage: ``python bench/bench_attacks.py [--n 100] [--eps 0.3] [--threads 2] [--json out.json]
[--attacks pgd,autoattack,rays,cw_l2] [--checkpoint PATH [--save-checkpoint]]``.
"""

from __future__ import annotations

import argparse
import json
import math
import time

import torch
from torch import nn

from er_core.attacks import make as make_attack
from er_core.data import Data, eval_indices, load
from er_core.methods import make
from er_core.train import fit
from grid.report.paper_values import CW_RMS_BOUND


class CountingModel(nn.Module):
    """Forwards to ``model`` and counts the images it was asked to classify."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.randomized = bool(getattr(model, "randomized", False))
        self.images = 0

    def forward(self, x):
        self.images += len(x)
        return self.model(x)


def get_model(args) -> nn.Module:
    method = make(args.method, "mnist")
    if args.checkpoint and not args.save_checkpoint:
        method.load_state_dict(torch.load(args.checkpoint, weights_only=True))
        return method.model.eval()
    data = load("mnist")
    k = min(args.train_images, len(data.x_train))
    subset = Data(data.name, data.x_train[:k], data.y_train[:k], data.x_test, data.y_test, data.num_classes)
    start = time.perf_counter()
    fit(method, subset, epochs=args.epochs, batch_size=128, seed=0)
    print(f"trained {args.method} for {args.epochs} epoch(s) on {k} images in {time.perf_counter() - start:.0f} s")
    if args.checkpoint:  # --save-checkpoint: keep it for the next run
        torch.save(method.state_dict(), args.checkpoint)
    return method.model.eval()


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def run(args) -> list[dict]:
    model = get_model(args)
    data = load("mnist")
    idx = eval_indices("mnist", args.n, seed=0)
    x, y = data.x_test[idx], data.y_test[idx]
    clean = accuracy(model, x, y)
    plan = [
        ("PGD-40", "pgd", args.eps, {"steps": 40}),
        ("AutoAttack standard", "autoattack", args.eps, {}),
        (f"RayS {args.rays_queries // 1000}k", "rays", args.eps, {"max_queries": args.rays_queries}),
        ("C&W-L2", "cw_l2", 0.0, {}),
    ]
    plan = [step for step in plan if step[1] in args.attacks]
    rows = []
    for label, name, eps, options in plan:
        counter = CountingModel(model)
        attack = make_attack(name, eps, **options)
        start = time.perf_counter()
        result = attack(counter, x, y)
        seconds = time.perf_counter() - start
        row = {
            "attack": label,
            "eps": eps if name != "cw_l2" else None,
            "seconds": seconds,
            "seconds_per_1000": seconds * 1000 / len(x),
            "queries_per_example": counter.images / len(x),
            "own_queries_per_example": None if result.queries is None else result.queries.float().mean().item(),
            "robust_accuracy": accuracy(model, result.x_adv, y),
        }
        if name == "cw_l2":
            rms = result.extra["l2"] / math.sqrt(x[0].numel())
            success = result.extra["success"]
            within = success & (rms <= CW_RMS_BOUND)
            with torch.no_grad():
                correct = model(x).argmax(1) == y
            row["robust_accuracy_rms_bound"] = (correct & ~within).float().mean().item()
            row["median_rms_l2"] = rms[success].median().item() if success.any() else None
        rows.append(row)
        print(f"  {label}: {seconds:.1f} s", flush=True)
    print(f"\nMNIST, {args.method} model, n = {len(x)}, clean accuracy {clean:.3f}, "
          f"ε = {args.eps} (ℓ∞), {torch.get_num_threads()} thread(s)\n")
    print("| attack | seconds | s / 1000 samples | model queries / example | own count / example | robust accuracy |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for r in rows:
        own = "—" if r["own_queries_per_example"] is None else f"{r['own_queries_per_example']:.0f}"
        acc = f"{r['robust_accuracy']:.3f}"
        if "robust_accuracy_rms_bound" in r:
            acc += f" (any ℓ2); {r['robust_accuracy_rms_bound']:.3f} at RMS ℓ2 ≤ {CW_RMS_BOUND}"
            if r["median_rms_l2"] is not None:
                acc += f"; median RMS ℓ2 {r['median_rms_l2']:.4f}"
        print(f"| {r['attack']} | {r['seconds']:.1f} | {r['seconds_per_1000']:.0f} | "
              f"{r['queries_per_example']:.0f} | {own} | {acc} |")
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="n = 100 and 10,000 training images")
    parser.add_argument("--n", type=int, default=None, help="evaluation samples (default 1000; --quick 100)")
    parser.add_argument("--eps", type=float, default=0.3)
    parser.add_argument("--method", default="none")
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--train-images", type=int, default=None, help="default 60000; --quick 10000")
    parser.add_argument("--checkpoint", default=None, help="load the method's state_dict from here")
    parser.add_argument("--save-checkpoint", action="store_true", help="train, then save to --checkpoint")
    parser.add_argument("--attacks", default="pgd,autoattack,rays,cw_l2", type=lambda s: s.split(","))
    parser.add_argument("--rays-queries", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", default=None, help="also write the rows here")
    args = parser.parse_args()
    args.n = args.n or (100 if args.quick else 1000)
    args.train_images = args.train_images or (10_000 if args.quick else 60_000)
    torch.set_num_threads(args.threads)
    rows = run(args)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "rows": rows}, f, indent=2)


if __name__ == "__main__":
    main()
