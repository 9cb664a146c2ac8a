"""RayS convergence and strength (``make bench``; ``--quick`` for a short run).

1. Convergence on known answers: two-class linear models (``linear_problem`` in
   tests/er_core/attacks/linear_models.py: 16 examples, inputs in [0.3, 0.7], true ℓ∞ optimum
   t* = |w·x + b| / ‖w‖₁ uniform in [0.02, 0.08], so no clipping binds) of MNIST shape
   (D = 784) and CIFAR10 shape (D = 3,072), with all-positive weights and with half of them
   negative. For query budgets 1k, 2k, 5k and 10k (no early stop) it prints the ratio found / t*
   (median, 90th percentile, max) of er_core's RayS beside the authors' reference code on the
   same models (``REFERENCE_RATIOS``; every ratio is ≥ 1 because every returned point is
   adversarial, and 1 is the optimum).
2. Strength on a trained model: the robust accuracy RayS (10k queries) leaves on digits models
   trained with ``none`` and ``madry``, next to AutoAttack (standard) measured in the same run
   at the same ε (digits' training ε, 0.1). A hard-label attack cannot beat the white-box
   ensemble by much; a RayS far above it is stopping short.

``REFERENCE_RATIOS`` was measured by running uclaml/RayS (commit 29bc174, ``RayS.py``, the
batched version, unmodified) on CPU on exactly these models: ``--reference DIR`` re-measures it
from a checkout of that repository (its ``.cuda()`` calls become no-ops and its progress bar is
silenced; its code is not part of this project). The reference checks the budget only between
candidates, so it may overshoot a budget by one bisection (≤ 15 queries).

Usage: ``python bench/bench_rays.py [--quick] [--n-digits 360] [--threads 1]
[--parts linear,digits] [--reference DIR]``. ``--quick``: the linear part at D = 784 only and
60 digits test images.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import sys
import time
import types
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests" / "er_core" / "attacks"))  # the known-answer models live there
from linear_models import linear_problem  # noqa: E402

from er_core.attacks import make as make_attack  # noqa: E402

BUDGETS = (1_000, 2_000, 5_000, 10_000)
DIMS = (784, 3_072)
NEGATIVE_FRACTIONS = (0.0, 0.5)
N_LINEAR, SEED = 16, 0
DIGITS_EPS = 0.1

# found / t* of the reference code, (median, 90th percentile, max) per (D, fraction of negative
# weights) and budget, on linear_problem(D, fraction, 16, seed=0) in float64; see the module
# docstring for how (``--reference DIR`` reproduces it).
REFERENCE_RATIOS: dict[tuple[int, float], dict[int, tuple[float, float, float]]] = {
    (784, 0.0): {
        1000: (1.0003, 1.0008, 1.0009),
        2000: (1.0003, 1.0008, 1.0009),
        5000: (1.0003, 1.0008, 1.0009),
        10000: (1.0003, 1.0008, 1.0009),
    },
    (784, 0.5): {
        1000: (3.2597, 3.3642, 3.4261),
        2000: (1.9798, 2.0303, 2.0509),
        5000: (1.1949, 1.2196, 1.2222),
        10000: (1.0004, 1.0112, 1.0155),
    },
    (3072, 0.0): {
        1000: (1.0001, 1.0003, 1.0005),
        2000: (1.0001, 1.0003, 1.0005),
        5000: (1.0001, 1.0003, 1.0005),
        10000: (1.0001, 1.0003, 1.0005),
    },
    (3072, 0.5): {
        1000: (5.4173, 5.4573, 5.4682),
        2000: (3.9838, 4.0788, 4.1319),
        5000: (2.3704, 2.4204, 2.4267),
        10000: (1.658, 1.691, 1.6987),
    },
}


def ratios(radius: torch.Tensor, t_star: torch.Tensor) -> tuple[float, float, float]:
    r = (radius.double() / t_star).cpu()
    return r.median().item(), r.quantile(0.9).item(), r.max().item()


def ours(model, x, y, budget: int) -> torch.Tensor:
    result = make_attack("rays", 1.0, max_queries=budget, early_stop=False)(model, x, y)
    assert (result.queries <= budget).all()
    return result.extra["radius"]


def load_reference(directory: str):
    """The reference's batched ``RayS`` class from a checkout of uclaml/RayS, runnable on CPU."""
    sys.modules["pgbar"] = types.SimpleNamespace(progress_bar=lambda *a, **k: None)
    torch.Tensor.cuda = lambda self, *a, **k: self  # the reference moves every tensor to CUDA
    sys.path.insert(0, str(Path(directory).resolve()))
    return importlib.import_module("RayS").RayS


def reference(ref_class, model, x, y, budget: int) -> torch.Tensor:
    class Labels:  # the reference's model interface: hard labels only
        def predict_label(self, images):
            with torch.no_grad():
                return model(images).argmax(1)

    attack = ref_class(Labels(), epsilon=0.0)
    with contextlib.redirect_stdout(io.StringIO()):  # it prints "out of queries"
        x_adv, _, dist, _ = attack.attack_hard_label(x, y, query_limit=budget)
    assert (model(x_adv).argmax(1) != y).all()
    return dist


def linear_part(dims, ref_class) -> dict:
    measured = {}
    print("| D | negative weights | budget | er_core median | p90 | max | reference median | p90 | max |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for dim in dims:
        for fraction in NEGATIVE_FRACTIONS:
            model, x, y, t_star = linear_problem(dim, fraction, N_LINEAR, seed=SEED)
            for budget in BUDGETS:
                mine = ratios(ours(model, x, y, budget), t_star)
                if ref_class is not None:
                    ref = ratios(reference(ref_class, model, x, y, budget), t_star)
                    measured.setdefault((dim, fraction), {})[budget] = tuple(round(v, 4) for v in ref)
                else:
                    ref = REFERENCE_RATIOS.get((dim, fraction), {}).get(budget)
                ref_cells = " | ".join(f"{v:.4f}" for v in ref) if ref else "— | — | —"
                print(f"| {dim} | {fraction:.0%} | {budget} | "
                      + " | ".join(f"{v:.4f}" for v in mine) + f" | {ref_cells} |", flush=True)
    return measured


def digits_part(n: int) -> None:
    from er_core.data import load
    from er_core.methods import make
    from er_core.train import fit

    data = load("digits")
    x, y = data.x_test[:n], data.y_test[:n]
    print(f"\ndigits, n = {n}, ε = {DIGITS_EPS} (ℓ∞)\n")
    print("| model | clean | AutoAttack standard | RayS 10k | RayS mean queries | seconds AA / RayS |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name in ("none", "madry"):
        method = make(name, "digits")
        fit(method, data, epochs=10, batch_size=32, seed=0)
        model = method.model.eval()
        row = [name, accuracy(model, x, y)]
        seconds = []
        for attack, options in (("autoattack", {"seed": 0}), ("rays", {"max_queries": 10_000})):
            start = time.perf_counter()
            result = make_attack(attack, DIGITS_EPS, **options)(model, x, y)
            seconds.append(time.perf_counter() - start)
            row.append(accuracy(model, result.x_adv, y))
        mean_queries = result.queries.float().mean().item()
        print(f"| {row[0]} | {row[1]:.3f} | {row[2]:.3f} | {row[3]:.3f} | {mean_queries:.0f} | "
              f"{seconds[0]:.0f} / {seconds[1]:.0f} |", flush=True)


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="D = 784 only; 60 digits test images")
    parser.add_argument("--n-digits", type=int, default=None, help="digits test images (default 360; --quick 60)")
    parser.add_argument("--parts", default="linear,digits", type=lambda s: s.split(","))
    parser.add_argument("--reference", default=None, help="a uclaml/RayS checkout: re-measure its ratios")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if "linear" in args.parts:
        ref_class = load_reference(args.reference) if args.reference else None
        measured = linear_part(DIMS[:1] if args.quick else DIMS, ref_class)
        if measured:
            print(f"\nREFERENCE_RATIOS = {measured!r}")
    if "digits" in args.parts:
        digits_part(args.n_digits or (60 if args.quick else 360))


if __name__ == "__main__":
    main()
