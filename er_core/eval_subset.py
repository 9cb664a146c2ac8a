"""The evaluation subset of a trial, its batches and their seeds: computed here and nowhere else.

A trial evaluates ``eval_indices(dataset, n, seed)`` (``er_core.data``: the same indices on
every machine), cut into batches of ``batch_size`` in index order. Every batch of an attack is
seeded from the trial's config alone (:func:`batch_seed`), so a batch redone after a crash, in
any order, in the grid or in the Ray-free runner, draws the same random starts. The held-out
slice that training is watched on (:func:`holdout_indices`) is the first test examples outside
the subset, so watching it selects nothing on the reported numbers.
"""

from __future__ import annotations

import torch

from .data import eval_indices
from .torch_utils import derive_seed


def eval_batches(dataset: str, n: int, seed: int, batch_size: int) -> list[torch.Tensor]:
    """The fixed evaluation subset cut into batches of test-set indices (the last may be shorter)."""
    return list(torch.split(eval_indices(dataset, n, seed), batch_size))


def batch_seed(train_seed: int, eval_seed: int, attack: str, eps: float, batch: int) -> int:
    """Seed for one evaluation batch of one attack at one ε, derived from config only.

    ``attack`` names the stream: the evaluation uses the attack's name, the codes stage
    ``codes_<attack>``, so the two never share random starts.
    """
    return derive_seed(train_seed, eval_seed, attack, float(eps), batch, sep="|")


# Examples of the held-out slice: enough for a ±2 % reading of accuracy (binomial std at 0.5
# is 2.2 % for n = 512), small next to an epoch on every dataset.
HOLDOUT_N = 512


def holdout_indices(dataset: str, test_size: int, eval_n: int, eval_seed: int, n: int = HOLDOUT_N) -> torch.Tensor:
    """The first ``n`` test indices outside the evaluation subset (the subset itself if it is
    the whole test set): never trained on, and not the examples the results report."""
    subset = set(eval_indices(dataset, eval_n, eval_seed).tolist())
    rest = [i for i in range(test_size) if i not in subset] or sorted(subset)
    return torch.tensor(rest[:n], dtype=torch.int64)


__all__ = ["HOLDOUT_N", "batch_seed", "eval_batches", "holdout_indices"]
