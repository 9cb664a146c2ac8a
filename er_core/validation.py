"""The validation split: a fixed slice of the training set that no trial trains on, and the
per-epoch metrics read on it.

Why: the evaluation subset is test data, so nothing may be chosen on it (λ, an epoch to stop
at, a default). Rice et al. (2020, "Overfitting in adversarially robust deep learning") show
that PGD-trained networks overfit robustly late in training and pick the epoch with the best
robust accuracy on held-out *training* data; the same slice here chooses a method's λ
(``grid.report.selection``) and, where a spec asks for it, the evaluated checkpoint.

- :func:`validation_indices`: ``RandomState(VALIDATION_SEED).permutation(train_size)[:n]``
  sorted: one split per dataset and size, the same for every trial, method, seed and machine,
  so trials compared with each other were validated on the same images.
- :func:`with_validation`: the dataset with those images moved from ``x_train``/``y_train``
  to ``x_val``/``y_val`` (the training order of the rest is kept).
- :func:`validation_metrics`: clean accuracy and PGD accuracy (``VALIDATION_PGD_STEPS``
  steps, Rice et al.'s PGD-10, at the given ε) on the split, under a forked RNG seeded from
  (seed, epoch), so watching it changes nothing the training draws and a resumed run reads
  the same values.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from .attacks.pgd import pgd_examples
from .data import Data
from .dataset_info import info
from .torch_utils import derive_seed, eval_mode, model_device

# One split for every trial of a dataset: a per-trial seed would validate the λ being
# compared on different images.
VALIDATION_SEED = 0
# Rice et al. (2020) track robust validation accuracy with PGD-10; at 10 steps its cost on a
# 5,000-image split is a small fraction of a PGD-trained epoch.
VALIDATION_PGD_STEPS = 10
VALIDATION_BATCH = 500


def validation_eps(dataset: str, train_eps: float | None) -> float:
    """The ε of the validation PGD: the training ε, else the dataset's default training ε (so the
    methods trained on clean images are watched at the ε their comparisons use)."""
    return float(train_eps if train_eps is not None else info(dataset).train_eps)


def validation_indices(name: str, n: int, seed: int = VALIDATION_SEED) -> torch.Tensor:
    """The ``n`` training-set indices held out for validation (sorted int64); n = 0 → empty.
    ValueError unless 0 ≤ n < the training set's size."""
    train_size = info(name).train_size
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or not 0 <= n < train_size:
        raise ValueError(f"validation n={n!r} must be an int in 0..{train_size - 1} for dataset {name!r}")
    idx = np.sort(np.random.RandomState(seed).permutation(train_size)[:n])
    return torch.from_numpy(idx.astype(np.int64))


def with_validation(data: Data, n: int, seed: int = VALIDATION_SEED) -> Data:
    """``data`` with the validation split moved out of the training set (n = 0: unchanged)."""
    if n == 0:
        return data
    held = validation_indices(data.name, n, seed)
    if len(data.x_train) != info(data.name).train_size:
        raise ValueError(f"{data.name}: {len(data.x_train)} training images, expected "
                         f"{info(data.name).train_size}; the split is defined on the full set")
    keep = torch.ones(len(data.x_train), dtype=torch.bool)
    keep[held] = False
    return dataclasses.replace(data, x_train=data.x_train[keep], y_train=data.y_train[keep],
                               x_val=data.x_train[held], y_val=data.y_train[held])


def validation_metrics(model: torch.nn.Module, data: Data, eps: float, seed: int, epoch: int) -> dict[str, float]:
    """``val_clean`` and ``val_pgd`` (PGD-10 accuracy at ``eps``) of ``model`` on ``data``'s
    split, plus ``val_eps``; {} when the data has no split. Model modes are restored after."""
    if data.x_val is None or len(data.x_val) == 0:
        return {}
    device = model_device(model)
    devices = [device.index or 0] if device.type == "cuda" else []
    clean = robust = 0
    with torch.random.fork_rng(devices=devices), eval_mode(model):
        torch.manual_seed(derive_seed("validation", int(seed), int(epoch)))
        for x, y in zip(data.x_val.split(VALIDATION_BATCH), data.y_val.split(VALIDATION_BATCH)):
            x, y = x.to(device), y.to(device)
            with torch.no_grad():
                clean += int((model(x).argmax(1) == y).sum())
            x_adv = pgd_examples(model, x, y, eps, VALIDATION_PGD_STEPS, 2.5 * eps / VALIDATION_PGD_STEPS)
            with torch.no_grad():
                robust += int((model(x_adv).argmax(1) == y).sum())
    n = len(data.x_val)
    return {"val_clean": clean / n, "val_pgd": robust / n, "val_eps": float(eps)}


__all__ = ["VALIDATION_PGD_STEPS", "VALIDATION_SEED", "validation_eps", "validation_indices", "validation_metrics",
           "with_validation"]
