"""Dataset registry: digits (embedded default), mnist, cifar10, stl10, tiny_imagenet.

``load(name, root=None, download=False)`` → :class:`Data` with float32 NCHW images in
[0, 1] and int64 labels. ``info(name)`` gives shape and class count without loading.
``eval_indices(name, n, seed)`` is the fixed evaluation subset of the test set.

(Loaders are being filled in; the ``DatasetInfo`` registry below is the stable interface.)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    channels: int
    height: int
    width: int
    num_classes: int
    test_size: int

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.channels, self.height, self.width)


@dataclass(frozen=True)
class Data:
    """A loaded dataset: float32 NCHW images in [0, 1], int64 labels."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    num_classes: int


INFO: dict[str, DatasetInfo] = {
    # digits: scikit-learn's 1797 8×8 images, split 1437 train / 360 test with a fixed seed.
    "digits": DatasetInfo("digits", 1, 8, 8, 10, 360),
    "mnist": DatasetInfo("mnist", 1, 28, 28, 10, 10000),
    "cifar10": DatasetInfo("cifar10", 3, 32, 32, 10, 10000),
    "stl10": DatasetInfo("stl10", 3, 96, 96, 10, 8000),
    "tiny_imagenet": DatasetInfo("tiny_imagenet", 3, 64, 64, 200, 10000),
}


def info(name: str) -> DatasetInfo:
    if name not in INFO:
        raise ValueError(f"unknown dataset {name!r}; valid datasets: {', '.join(INFO)}")
    return INFO[name]
