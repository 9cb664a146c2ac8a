"""The torch side of the detectors: network outputs as float64 numpy features.

- :func:`predicted_labels`: the model's argmax labels, numpy int64.
- :func:`combined_code`: ER2's combined code (encoder block means ⊕ z).
- :func:`mc_dropout_uncertainty`: Feinman's Bayesian uncertainty from Monte-Carlo dropout.
- :func:`lid_mle`: Ma et al.'s maximum-likelihood LID estimate.
"""

from __future__ import annotations

from typing import Callable

import numpy as np
import torch
from torch import nn

from ..torch_utils import eval_mode, model_device, predict


@torch.no_grad()
def map_batches(fn: Callable[[torch.Tensor], torch.Tensor], x: torch.Tensor, batch_size: int, device) -> np.ndarray:
    """fn over x in batches on ``device``; concatenated as float64 numpy (N, ...)."""
    outs = [fn(x[i:i + batch_size].to(device)).double().cpu() for i in range(0, len(x), batch_size)]
    if not outs:
        raise ValueError("x must hold at least one example")
    return torch.cat(outs).numpy()


def predicted_labels(model: nn.Module, x: torch.Tensor, batch_size: int = 256) -> np.ndarray:
    """argmax of the model's logits in eval mode: int64 (N,)."""
    return predict(model, x, batch_size).cpu().numpy().astype(np.int64, copy=False)


def block_outputs(model: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    """Unflattened encoder block outputs (the tensors ``model.hidden`` flattens), without z.

    Captured with forward hooks on ``model.blocks`` while ``model.hidden`` runs, so the values
    are exactly those hidden() sees. Models without ``blocks`` give hidden()[:-1] flattened.
    """
    blocks = getattr(model, "blocks", None)
    if blocks is None:
        return list(model.hidden(x)[:-1])
    captured: list[torch.Tensor] = []
    handles = [b.register_forward_hook(lambda _m, _i, out: captured.append(out)) for b in blocks]
    try:
        model.hidden(x)
    finally:
        for h in handles:
            h.remove()
    return captured


def combined_code(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """ER2's combined code Z': per-block means concatenated with z, shape (N, Σ c_i + k).

    A convolutional block output (N, C, H, W) contributes its channel means over spatial
    positions (N, C); a flat block output (N, d) has no spatial positions and contributes itself.
    """
    parts = [h.flatten(2).mean(2) if h.dim() > 2 else h for h in block_outputs(model, x)]
    return torch.cat(parts + [model.embed(x)], dim=1)


def mc_dropout_uncertainty(model: nn.Module, x: torch.Tensor, passes: int, batch_size: int, seed: int) -> np.ndarray:
    """Feinman's Bayesian uncertainty: variance over ``passes`` dropout passes of the softmax,
    averaged over classes; float64 (N,). Only nn.Dropout modules run in train mode (BatchNorm
    stays in eval). The global torch RNG is forked, so this does not disturb the caller's.
    For an ERNet (``embed``/``classify``; not RSE) only the head is re-run per pass: its one
    dropout module sits there, so this equals full forward passes at a fraction of the cost.
    """
    if not any(isinstance(m, nn.Dropout) and m.p > 0 for m in model.modules()):
        raise ValueError(
            "kd: the model has no nn.Dropout with p > 0, so MC-dropout uncertainty is 0; build it with "
            "dropout > 0, e.g. er_core.methods.make('none', dataset, dropout=0.5)"
        )
    device = model_device(model)
    # An ERNet's only dropout sits in classify() (before the head), so the code z is computed
    # once and only the head is re-sampled: the same distribution as full passes, ~passes× cheaper.
    head_only = hasattr(model, "embed") and hasattr(model, "classify") and not getattr(model, "randomized", False)

    def passes_var(b: torch.Tensor) -> torch.Tensor:
        if head_only:
            z = model.embed(b)
            probs = torch.stack([model.classify(z).softmax(1) for _ in range(passes)])  # (T, B, classes)
        else:
            probs = torch.stack([model(b).softmax(1) for _ in range(passes)])
        return probs.var(0, unbiased=False).mean(1)

    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), eval_mode(model, dropout=True):
        torch.manual_seed(seed)
        return map_batches(passes_var, x, batch_size, device)


def lid_mle(queries: torch.Tensor, reference: torch.Tensor, k: int) -> torch.Tensor:
    """MLE of local intrinsic dimensionality (Ma et al. 2018, eq. 4) of each query point.

    queries (B, d), reference (R, d), k ≤ R: with d_1 ≤ … ≤ d_k the distances to the k nearest
    reference points, LID = −1 / mean_i log(d_i / d_k). Returns float64 (B,). Distances are
    floored at 1e-12 so a duplicate of a reference point gives a finite (small) value.
    """
    # float64 keeps the matrix-product form of cdist accurate for near neighbours.
    dist = torch.cdist(queries.double(), reference.double())
    knn = dist.topk(k, dim=1, largest=False).values.clamp_min(1e-12)  # ascending
    mean_log = torch.log(knn / knn[:, -1:]).mean(1)
    return -1.0 / mean_log.clamp(max=-1e-12)
