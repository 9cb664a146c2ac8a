"""The validation split (er_core.validation): held out of the training set, fixed per dataset,
and read per epoch without changing what training draws.

Checked: the split's indices are training-set indices, sorted, the same on every call, and the
training images left for training are exactly the others (no image both trained on and
validated on, none lost); the evaluation subset is test-set data, so the split can never hold
one of its images; the readings are accuracies of the model on the split (clean equals a direct
count), repeatable for the same (seed, epoch), and leave torch's global RNG where it was; bad
sizes are refused with the dataset named.
"""

from __future__ import annotations

import pytest
import torch

import er_core.data
import er_core.methods
from er_core.validation import validation_indices, validation_metrics, with_validation


def test_split_is_disjoint_from_the_training_images_and_covers_the_set():
    full = er_core.data.load("digits")
    idx = validation_indices("digits", 200)
    assert idx.tolist() == sorted(set(idx.tolist())) and len(idx) == 200
    assert torch.equal(idx, validation_indices("digits", 200))
    split = with_validation(full, 200)
    assert len(split.x_train) + len(split.x_val) == len(full.x_train)
    kept = sorted(set(range(len(full.x_train))) - set(idx.tolist()))
    assert torch.equal(split.x_train, full.x_train[kept]) and torch.equal(split.x_val, full.x_train[idx])
    assert torch.equal(split.y_val, full.y_train[idx])
    # The test set (and so the evaluation subset) is untouched: a separate tensor.
    assert torch.equal(split.x_test, full.x_test)
    assert with_validation(full, 0) is full


def test_bad_sizes_name_the_dataset():
    with pytest.raises(ValueError, match="digits"):
        validation_indices("digits", 1437)
    with pytest.raises(ValueError, match="digits"):
        validation_indices("digits", -1)


def test_readings_are_accuracies_on_the_split_repeatable_and_leave_the_rng_alone():
    data = with_validation(er_core.data.load("digits"), 150)
    method = er_core.methods.make("madry", "digits")
    method.model.eval()
    with torch.no_grad():
        direct = float((method.model(data.x_val).argmax(1) == data.y_val).float().mean())
    torch.manual_seed(123)
    before = torch.get_rng_state()
    first = validation_metrics(method.model, data, 0.1, seed=0, epoch=1)
    assert torch.equal(torch.get_rng_state(), before)
    assert first["val_clean"] == pytest.approx(direct) and first["val_eps"] == 0.1
    assert 0.0 <= first["val_pgd"] <= first["val_clean"]
    assert validation_metrics(method.model, data, 0.1, seed=0, epoch=1) == first
    assert validation_metrics(method.model, er_core.data.load("digits"), 0.1, 0, 1) == {}
