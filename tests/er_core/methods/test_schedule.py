"""Per-epoch schedules: the ε warm-up a method actually attacks with, and the lr its optimisers use.

Both are observed, not recomputed: the ε is the L∞ size of the training examples the
method's inner maximiser returned (a spy around the attack function), the lr is read from
the optimiser's parameter groups while the epoch trains. Expected values are written out.
"""

import dataclasses

import pytest

import er_core.methods.base as base_module
import er_core.methods.trades as trades_module
from er_core.methods import make
from er_core.methods.schedule import lr_factor
from er_core.train import fit


@pytest.fixture(scope="module")
def small_digits(digits):
    """64 training images: two batches of 32 per epoch, enough to see each epoch's ε."""
    return dataclasses.replace(digits, x_train=digits.x_train[:64], y_train=digits.y_train[:64])


def _spy(monkeypatch, module, name, record):
    """Wrap ``module.name`` (an attack function taking x as its 2nd argument) to record ‖x_adv − x‖∞."""
    real = getattr(module, name)

    def spy(model, x, *args, **kwargs):
        x_adv = real(model, x, *args, **kwargs)
        record.append((x_adv - x).abs().amax().item())
        return x_adv

    monkeypatch.setattr(module, name, spy)


# er and madry go through Method.pgd → base.pgd_examples; trades and er_trades through
# trades.trades_examples.
@pytest.mark.parametrize("name,module,attack", [
    ("madry", base_module, "pgd_examples"),
    ("er", base_module, "pgd_examples"),
    ("trades", trades_module, "trades_examples"),
])
def test_warmup_eps_observed_per_epoch(monkeypatch, small_digits, name, module, attack):
    record: list[float] = []
    _spy(monkeypatch, module, attack, record)
    method = make(name, "digits", train_eps=0.3, eps_warmup_epochs=3, pgd_steps=3)
    history = fit(method, small_digits, epochs=5, batch_size=32, seed=0)
    per_epoch = [max(record[2 * e : 2 * e + 2]) for e in range(5)]  # two batches per epoch
    # ε·min(1, (e+1)/3) for ε 0.3: the signed steps of 2.5·ε/steps saturate the ball.
    assert per_epoch == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3], abs=1e-5)
    assert [h["train_eps_epoch"] for h in history] == pytest.approx([0.1, 0.2, 0.3, 0.3, 0.3])


def test_no_warmup_uses_full_eps_from_the_start(monkeypatch, small_digits):
    record: list[float] = []
    _spy(monkeypatch, base_module, "pgd_examples", record)
    fit(make("madry", "digits", train_eps=0.3, eps_warmup_epochs=0, pgd_steps=3), small_digits, epochs=2, batch_size=32)
    assert record == pytest.approx([0.3] * 4, abs=1e-5)


@pytest.mark.parametrize("schedule,expected", [
    ("constant", [1e-3, 1e-3, 1e-3, 1e-3]),
    # milestones at floor(0.5·4) = 2 and floor(0.75·4) = 3
    ("piecewise", [1e-3, 1e-3, 1e-4, 1e-5]),
    # 0.5·(1 + cos(π·e/4)) · 1e-3
    ("cosine", [1e-3, 0.853553e-3, 0.5e-3, 0.146447e-3]),
])
def test_lr_schedule_observed_in_the_optimisers(small_digits, schedule, expected):
    method = make("er_minus", "digits", lr_schedule=schedule, reg_update="separate", reg_lr=2e-3)
    seen = {"model": [], "reg": [], "critic": []}
    real_step = method.train_step

    def step_and_look(x, y):
        for k in seen:
            seen[k].append(method.optimizers[k].param_groups[0]["lr"])
        return real_step(x, y)

    method.train_step = step_and_look
    history = fit(method, small_digits, epochs=4, batch_size=64, seed=0)
    assert seen["model"] == pytest.approx(expected, rel=1e-5)
    assert seen["reg"] == pytest.approx([2 * v for v in expected], rel=1e-5)  # scaled from reg_lr
    assert seen["critic"] == pytest.approx([method.hp["critic_lr"]] * 4)  # the critic keeps its lr
    assert [h["lr"] for h in history] == pytest.approx(expected, rel=1e-5)


def test_schedule_validation():
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        make("madry", "digits", lr_schedule="step")
    with pytest.raises(ValueError, match="eps_warmup_epochs"):
        make("madry", "digits", eps_warmup_epochs=-1)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        lr_factor("linear", 0, 10)
