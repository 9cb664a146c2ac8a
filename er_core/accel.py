"""Speed levers for the training loop on a GPU, each off by default until measured there.

The paper grid's small networks are launch-bound on a GPU (an MNIST PGD-40 epoch ran at 2.1k
images/s on an H200 against 56k for clean training of the same net): what costs is the number
of kernel launches per PGD step, not arithmetic. Three standard levers, each a method
hyperparameter (so it is part of ``trial_id``: a lever that changes the numbers never mixes
with rows trained without it):

- ``compile_model``: ``nn.Module.compile()`` on the model (``torch.compile`` in place: the
  state_dict keys are unchanged, checkpoints load either way); every forward of training,
  PGD steps included, runs the compiled graph. On CPU results equal the eager ones to float
  rounding; the first batches pay the compilation.
- ``channels_last``: the model's weights and every training batch in channels-last memory
  format (NHWC), the layout tensor cores want for convolutions; equal to float rounding.
- ``autocast_bf16``: the training step (PGD examples, losses, the critic) under
  ``torch.autocast(dtype=bfloat16)``; parameters and optimiser state stay float32. This one
  changes the numbers beyond rounding (8-bit mantissa activations): the test states its
  tolerance.

``compile_model`` and ``channels_last`` stay on the model afterwards, in evaluation too (equal
to float rounding); bf16 autocast is for training steps only: attacks and verdicts run in float32,
since the reported robust accuracy must not depend on a speed setting. Their speed on the
device present is ``bench/bench_levers.py``'s, against the plain path in the same run.
"""

from __future__ import annotations

import contextlib

import torch


def prepare_model(model: torch.nn.Module, hp: dict) -> None:
    """Apply the model-side levers the hyperparameters ask for (in place)."""
    if hp.get("channels_last"):
        model.to(memory_format=torch.channels_last)
    if hp.get("compile_model"):
        model.compile()


def prepare_batch(x: torch.Tensor, hp: dict) -> torch.Tensor:
    """A training batch in the memory format the model was put in."""
    return x.contiguous(memory_format=torch.channels_last) if hp.get("channels_last") else x


def step_context(hp: dict, device: torch.device):
    """The context one training step runs in: bf16 autocast where asked, else nothing."""
    if hp.get("autocast_bf16"):
        return torch.autocast(device_type=torch.device(device).type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


__all__ = ["prepare_batch", "prepare_model", "step_context"]
