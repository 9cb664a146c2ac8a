"""er_core.train.fit: resume from an epoch-2 checkpoint equals an uninterrupted run, with the
per-epoch schedules (ε warm-up, each lr schedule) set from the epoch index on resume."""

import pytest
import torch

from er_core.methods import make
from er_core.train import derive_seed, fit


def _weights(method):
    sd = {f"model.{k}": v for k, v in method.model.state_dict().items()}
    if method.critic is not None:
        sd.update({f"critic.{k}": v for k, v in method.critic.state_dict().items()})
    return sd


# er: PGD random starts, prior samples, critic and two optimisers; rse: noise in every pass;
# er_minus with the separate regulariser optimiser. The schedule cases resume at epoch 2
# of 4 where both change: warm-up W 3 gives ε 0.1, 0.2 before the checkpoint and 0.3
# after; 'piecewise' drops the lr at epochs 2 and 3 (the checkpoint's optimiser still holds
# epoch 1's lr), 'cosine' changes it every epoch.
@pytest.mark.parametrize("name,hp", [
    ("er", {"pgd_steps": 3}),
    ("rse", {}),
    ("er_minus", {"reg_update": "separate", "lr_schedule": "piecewise"}),
    ("madry", {"pgd_steps": 2, "train_eps": 0.3, "eps_warmup_epochs": 3, "lr_schedule": "piecewise"}),
    ("er", {"pgd_steps": 2, "train_eps": 0.3, "eps_warmup_epochs": 3, "lr_schedule": "cosine"}),
    ("trades", {"pgd_steps": 2, "train_eps": 0.3, "eps_warmup_epochs": 3, "lr_schedule": "constant"}),
])
def test_resume_from_epoch_2_equals_uninterrupted(digits, tmp_path, name, hp):
    full = make(name, "digits", **hp)
    fit(full, digits, epochs=4, batch_size=128, seed=3)

    first = make(name, "digits", **hp)
    path = tmp_path / "epoch2.pt"
    seen = []

    class Killed(Exception):
        pass

    def save_then_die(epoch_done, metrics):
        # A run of 4 epochs stopped after the epoch-2 checkpoint (as a killed trial): the
        # schedules see the run's real length, 4, in the epochs before the checkpoint too.
        seen.append(epoch_done)
        if epoch_done == 2:
            torch.save(first.state_dict(), path)
            raise Killed

    with pytest.raises(Killed):
        fit(first, digits, epochs=4, batch_size=128, seed=3, on_epoch=save_then_die)
    assert seen == [1, 2]

    resumed = make(name, "digits", **hp, init_seed=99)  # different init: the load must overwrite it
    resumed.load_state_dict(torch.load(path, weights_only=True))
    history = fit(resumed, digits, epochs=4, batch_size=128, start_epoch=2, seed=3)
    assert [h["epoch"] for h in history] == [3, 4]
    if hp.get("eps_warmup_epochs") == 3:
        assert [h["train_eps_epoch"] for h in history] == pytest.approx([0.3, 0.3])
    if hp.get("lr_schedule") == "piecewise":
        assert [h["lr"] for h in history] == pytest.approx([1e-4, 1e-5])

    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6, rtol=0), k
    # and training did move the weights away from the epoch-2 state
    mid = torch.load(path, weights_only=True)["model"]
    assert any(not torch.allclose(mid[k], full.model.state_dict()[k]) for k in mid if mid[k].is_floating_point())


def test_seed_changes_the_run(digits):
    a, b = make("none", "digits"), make("none", "digits")
    fit(a, digits, epochs=1, seed=0)
    fit(b, digits, epochs=1, seed=1)
    assert not torch.allclose(a.model.head.weight, b.model.head.weight)


def test_history_and_validation(digits):
    m = make("none", "digits")
    history = fit(m, digits, epochs=2, batch_size=500)
    assert [h["epoch"] for h in history] == [1, 2]
    assert history[1]["loss"] < history[0]["loss"] and history[0]["images"] == len(digits.x_train)
    with pytest.raises(ValueError, match="batch_size"):
        fit(m, digits, epochs=1, batch_size=0)
    with pytest.raises(ValueError, match="start_epoch"):
        fit(m, digits, epochs=1, start_epoch=2)


def test_derive_seed_is_stable():
    assert derive_seed(0, 0, "shuffle") == derive_seed(0, 0, "shuffle")
    assert len({derive_seed(0, 0, "shuffle"), derive_seed(0, 1, "shuffle"), derive_seed(1, 0, "shuffle"),
                derive_seed(0, 0, "global")}) == 4
    assert 0 <= derive_seed(12345, 29, "global") < 2**63


def test_the_progress_bar_draws_only_when_asked_and_changes_nothing(digits, capsys):
    quiet, shown = make("madry", "digits", pgd_steps=2), make("madry", "digits", pgd_steps=2)
    fit(quiet, digits, epochs=2, batch_size=256, seed=3)  # stderr is captured, not a terminal: no bar
    assert capsys.readouterr().err == ""
    fit(shown, digits, epochs=2, batch_size=256, seed=3, progress=True)
    bar = capsys.readouterr().err
    assert "epoch 2/2" in bar and f"{2 * len(digits.x_train) / 1000:.2f}k/{2 * len(digits.x_train) / 1000:.2f}k" in bar
    assert all(torch.equal(v, _weights(shown)[k]) for k, v in _weights(quiet).items())
