"""The epoch loop: ``fit(method, data, epochs, batch_size, start_epoch, seed, on_epoch)``.

A progress bar (tqdm, on stderr) counts the images of the epochs being trained, only when
stderr is a terminal (never in a Ray worker or a log file); it draws no random numbers, so
results are the same with or without it.

Reproducible and resumable: at the start of epoch e (0-based) the shuffle order comes from
a ``torch.Generator`` seeded with derive_seed(seed, e, "shuffle") and torch's global RNG
(PGD random starts, prior samples, RSE noise, dropout) is reseeded with
derive_seed(seed, e, "global"), and ``method.begin_epoch(e, epochs)`` sets the epoch's
learning rate and training ε (functions of e only). With the method's ``augment`` set to
``crop_flip`` the epoch's crops and flips come from derive_seed(seed, e, "augment")
(``er_core.augment``). Nothing carries over between epochs except the method's state, so a
method restored from an epoch-k ``state_dict`` and fitted from ``start_epoch=k`` ends with the same weights as an uninterrupted run (on the same device
and torch build). Knows nothing about Ray.
"""

from __future__ import annotations

import time
from typing import Callable, Optional

import torch
from tqdm import tqdm

from . import torch_utils
from .accel import prepare_batch, step_context
from .augment import crop_flip, draw_epoch
from .data import Data


def derive_seed(seed: int, epoch: int, stream: str) -> int:
    """The seed of one epoch's random stream (shuffling, attack starts), from the trial seed."""
    return torch_utils.derive_seed("er-grid", int(seed), int(epoch), stream)


def fit(
    method,
    data: Data,
    epochs: int,
    batch_size: int = 128,
    start_epoch: int = 0,
    seed: int = 0,
    on_epoch: Optional[Callable[[int, dict], None]] = None,
    progress: Optional[bool] = None,
) -> list[dict]:
    """Train ``method`` on ``data.x_train``/``y_train`` from ``start_epoch`` up to ``epochs``.

    Returns one dict per epoch trained: 'epoch' (1-based count of epochs done), 'seconds',
    'images', what ``method.begin_epoch`` returned ('lr', and 'train_eps_epoch' for
    adversarial methods) and the batch-size-weighted mean of every value ``train_step``
    reported ('loss' always; the ER family adds the critic diagnostics 'critic_w',
    'critic_live', 'critic_active', 'reg_grad_ratio', see ``methods.er``).
    ``on_epoch(epoch_done, metrics)`` is called after each epoch (checkpoint there).
    The last batch of an epoch may be smaller than ``batch_size``.
    ``progress``: the progress bar; None draws it only when stderr is a terminal.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be ≥ 1, got {batch_size}")
    if not 0 <= start_epoch <= epochs:
        raise ValueError(f"need 0 ≤ start_epoch ≤ epochs, got start_epoch={start_epoch}, epochs={epochs}")
    x_all, y_all = data.x_train, data.y_train
    n = len(x_all)
    if n == 0 or len(y_all) != n:
        raise ValueError(f"data.x_train/y_train must be non-empty and equally long, got {n} and {len(y_all)}")
    history = []
    with tqdm(total=(epochs - start_epoch) * n, unit="img", unit_scale=True, leave=False,
              disable=None if progress is None else not progress) as bar:
        for epoch in range(start_epoch, epochs):
            bar.set_description(f"epoch {epoch + 1}/{epochs}")
            metrics = _train_epoch(method, data, epoch, epochs, batch_size, seed, bar)
            history.append(metrics)
            if "loss" in metrics:
                bar.set_postfix(loss=f"{metrics['loss']:.3f}")
            if on_epoch is not None:
                on_epoch(epoch + 1, metrics)
    return history


def _train_epoch(method, data: Data, epoch: int, epochs: int, batch_size: int, seed: int, bar) -> dict:
    """One epoch of ``fit`` (0-based ``epoch``); its metrics. ``bar`` counts the images trained."""
    started = time.perf_counter()
    x_all, y_all = data.x_train, data.y_train
    n = len(x_all)
    device = method.device
    hp = getattr(method, "hp", {})
    padding = int(hp.get("crop_padding") or 0) if hp.get("augment") == "crop_flip" else None
    order = torch.randperm(n, generator=torch.Generator().manual_seed(derive_seed(seed, epoch, "shuffle")))
    torch.manual_seed(derive_seed(seed, epoch, "global"))
    scheduled = method.begin_epoch(epoch, epochs)
    if padding is not None:
        draws = draw_epoch(n, padding, torch.Generator().manual_seed(derive_seed(seed, epoch, "augment")))
    sums: dict[str, float] = {}
    for i in range(0, n, batch_size):
        idx = order[i : i + batch_size]
        x = x_all[idx].to(device, non_blocking=True)
        y = y_all[idx].to(device, non_blocking=True)
        if padding is not None:
            x = crop_flip(x, padding, draws.batch(i, i + len(idx), device))
        with step_context(hp, device):
            logs = method.train_step(prepare_batch(x, hp), y)
        for k, v in logs.items():
            sums[k] = sums.get(k, 0.0) + v * len(idx)
        bar.update(len(idx))
    metrics = {"epoch": epoch + 1, **scheduled, **{k: v / n for k, v in sums.items()}}
    metrics["seconds"] = time.perf_counter() - started
    metrics["images"] = n
    return metrics
