"""er_core alone, without Ray: train ``none`` and ``er_minus`` on digits, print a table.

Trains each method for 20 epochs (batch 32, seed 0) on scikit-learn's bundled 8×8 digits
and reports clean test accuracy and accuracy under L∞ PGD-20 at ε 0.05 and 0.1 on the
360 test images. About 20 s of CPU on one thread. Run: ``python -m er_core.demo``.
"""

from __future__ import annotations

import argparse
import time

import torch

from .attacks import make as make_attack
from .data import load
from .methods import make
from .torch_utils import predict
from .train import fit

EPSILONS = (0.05, 0.1)


def accuracy(model, x, y) -> float:
    return (predict(model, x) == y).float().mean().item()


def run(methods=("none", "er_minus"), epochs: int = 20, batch_size: int = 32, seed: int = 0) -> list[dict]:
    data = load("digits")
    rows = []
    for name in methods:
        started = time.perf_counter()
        method = make(name, "digits")
        fit(method, data, epochs=epochs, batch_size=batch_size, seed=seed)
        model = method.model
        row = {"method": name, "clean": accuracy(model, data.x_test, data.y_test)}
        for eps in EPSILONS:
            x_adv = make_attack("pgd", eps, steps=20)(model, data.x_test, data.y_test).x_adv
            row[f"pgd {eps}"] = accuracy(model, x_adv, data.y_test)
        row["seconds"] = time.perf_counter() - started
        rows.append(row)
    return rows


def format_table(rows: list[dict]) -> str:
    cols = list(rows[0])
    lines = [" | ".join(f"{c:>10}" for c in cols), " | ".join("-" * 10 for _ in cols)]
    for r in rows:
        lines.append(" | ".join(f"{r[c]:>10.3f}" if isinstance(r[c], float) else f"{r[c]:>10}" for c in cols))
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    # One thread: these nets are tiny (8×8 inputs), so more threads add only contention, and
    # float reduction order (hence the exact numbers) then matches the tests.
    torch.set_num_threads(1)
    print(f"digits: {args.epochs} epochs each, batch 32, seed {args.seed}; PGD-20 (L∞) on 360 test images")
    print(format_table(run(epochs=args.epochs, seed=args.seed)))


if __name__ == "__main__":
    main()
