"""The GPU speed levers (er_core.accel) checked on CPU against the plain path.

channels_last and torch.compile change only the memory layout and the kernels: two epochs of
PGD training (the ER method, critic included) give the plain run's weights to float rounding,
and the weights' hash and checkpoints are unchanged by the layout. bf16 autocast changes the
numbers: its first-batch loss is within 2% of float32's and after two epochs the clean accuracy
on the test set is within 5 points (the stated tolerance; float32 is the reference).
"""

from __future__ import annotations

import pytest
import torch

import er_core.data
import er_core.methods
from er_core.train import fit

HP = {"train_eps": 0.1, "pgd_steps": 3}


def trained(**levers):
    torch.manual_seed(0)
    method = er_core.methods.make("er", "digits", **HP, **levers)
    history = fit(method, er_core.data.load("digits"), epochs=2, batch_size=128, seed=3)
    return method, history


def accuracy(method) -> float:
    data = er_core.data.load("digits")
    with torch.no_grad():
        return float((method.model.eval()(data.x_test).argmax(1) == data.y_test).float().mean())


@pytest.fixture(scope="module")
def plain():
    torch.set_num_threads(1)
    return trained()


@pytest.mark.parametrize("lever", ["channels_last", "compile_model"])
def test_layout_and_compilation_levers_equal_the_plain_path(plain, lever):
    method, history = trained(**{lever: True})
    reference, reference_history = plain
    for name, want in reference.model.state_dict().items():
        got = method.model.state_dict()[name]
        assert got.shape == want.shape and torch.allclose(got, want, rtol=1e-3, atol=1e-5), name
    assert [h["loss"] for h in history] == pytest.approx([h["loss"] for h in reference_history], rel=1e-4)
    if lever == "channels_last":
        conv = method.model.blocks[0][1].weight
        assert conv.is_contiguous(memory_format=torch.channels_last)
    # Same state_dict keys either way: checkpoints of a lever run load into a plain method.
    fresh = er_core.methods.make("er", "digits", **HP)
    fresh.load_state_dict(method.state_dict())


def test_bf16_autocast_stays_within_the_stated_tolerance(plain):
    method, history = trained(autocast_bf16=True)
    reference, reference_history = plain
    assert history[0]["loss"] == pytest.approx(reference_history[0]["loss"], rel=0.02)
    assert abs(accuracy(method) - accuracy(reference)) <= 0.05
    assert not torch.equal(method.model.head.weight, reference.model.head.weight)  # it did run in bf16
    assert method.model.head.weight.dtype == torch.float32  # parameters stay float32
