"""Training-time data augmentation, done on the device the batch is on, reproducible per epoch.

``crop_flip`` (``er_core.recipes``' ``sgd_piecewise``): each image is zero-padded by ``padding``
pixels on every side, a window of its own size is cut at a uniformly random offset, and the
result is mirrored left-right with probability ½ (the CIFAR10 augmentation of He et al. 2016,
used by Madry et al., TRADES and Rice et al. for PGD training).

The random offsets and flips of a whole epoch are drawn at its start from one CPU
``torch.Generator`` seeded with ``derive_seed(seed, epoch, "augment")`` (``er_core.train``), one
triple per position in the epoch's shuffled order: the same (seed, epoch) gives the same crops
and flips on every device, and a run resumed at epoch k draws what the uninterrupted run drew.
Only the per-epoch draw is on the CPU (three small integer tensors); the cropping itself is one
gather on the batch's device.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass(frozen=True)
class EpochDraws:
    """Per-example crop offsets (rows, cols in 0..2·padding) and flips of one epoch, in order."""

    dy: torch.Tensor
    dx: torch.Tensor
    flip: torch.Tensor

    def batch(self, start: int, stop: int, device) -> "EpochDraws":
        return EpochDraws(*(t[start:stop].to(device, non_blocking=True) for t in (self.dy, self.dx, self.flip)))


def draw_epoch(n: int, padding: int, generator: torch.Generator) -> EpochDraws:
    """The ``n`` crops and flips of one epoch from ``generator`` (CPU)."""
    dy = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    dx = torch.randint(0, 2 * padding + 1, (n,), generator=generator)
    flip = torch.rand(n, generator=generator) < 0.5
    return EpochDraws(dy, dx, flip)


def crop_flip(x: torch.Tensor, padding: int, draws: EpochDraws) -> torch.Tensor:
    """``x`` (N, C, H, W) cropped from its zero-padded self at ``draws``' offsets, then flipped."""
    n, c, h, w = x.shape
    padded = F.pad(x, (padding, padding, padding, padding))
    rows = (draws.dy[:, None] + torch.arange(h, device=x.device))[:, None, :, None]  # (N, 1, H, 1)
    cols = (draws.dx[:, None] + torch.arange(w, device=x.device))[:, None, None, :]  # (N, 1, 1, W)
    batch = torch.arange(n, device=x.device)[:, None, None, None]
    channel = torch.arange(c, device=x.device)[None, :, None, None]
    out = padded[batch, channel, rows, cols]
    return torch.where(draws.flip[:, None, None, None], out.flip(3), out)


__all__ = ["EpochDraws", "crop_flip", "draw_epoch"]
