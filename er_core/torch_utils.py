"""The small torch helpers every layer needs, in one place.

- :func:`eval_mode`: a model in eval mode for the duration of a block (optionally with its
  dropout left on, for MC-dropout passes); every module's mode is restored afterwards, also on
  an exception.
- :func:`predict`: argmax predictions in eval mode, in batches, on the model's device.
- :func:`derive_seed`: a 63-bit seed from a tuple of values, identical on every machine, run
  and Python version (sha256, not ``hash``), so a piece of work redone after a crash draws the
  same randomness as in an uninterrupted run.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Iterator

import torch
from torch import nn


def model_device(model: nn.Module) -> torch.device:
    """The device of the model's first parameter (CPU for a model without parameters)."""
    for p in model.parameters():
        return p.device
    return torch.device("cpu")


@contextlib.contextmanager
def eval_mode(model: nn.Module, dropout: bool = False) -> Iterator[nn.Module]:
    """``model`` in eval mode inside the block; ``dropout=True`` keeps its nn.Dropout modules in
    train mode (Monte-Carlo dropout). Each module's own mode is restored on exit."""
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    if dropout:
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.train()
    try:
        yield model
    finally:
        for m, mode in modes:
            m.training = mode


@torch.no_grad()
def predict(model: nn.Module, x: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
    """argmax predictions (N,) in eval mode, ``batch_size`` examples at a time.

    The batches run on the model's device; the result is on the model's device too. One
    forward pass per example: a randomised model's ensemble is whatever its forward does.
    """
    device = model_device(model)
    with eval_mode(model):
        preds = [model(chunk.to(device)).argmax(dim=1) for chunk in x.split(batch_size)]
    return torch.cat(preds) if preds else torch.zeros(0, dtype=torch.int64, device=device)


def derive_seed(*parts: object, sep: str = ":") -> int:
    """A 63-bit seed from ``sep.join(str(part) for part in parts)`` (sha256, first 8 bytes)."""
    key = sep.join(str(part) for part in parts).encode()
    return int.from_bytes(hashlib.sha256(key).digest()[:8], "little") >> 1
