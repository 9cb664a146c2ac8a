"""The schedule and critic settings pass through the grid like every other method hyperparameter."""

from __future__ import annotations

import pytest

from er_core.methods import make
from grid.spec import GridSpec


def _spec(hyperparams=None) -> dict:
    spec = {
        "experiment": "unit",
        "datasets": ["digits"],
        "methods": ["madry", "er"],
        "train_eps": {"digits": [0.3]},
        "lams": [5.0],
        "seeds": [0],
        "epochs": 2,
        "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]},
        "eval_n": {"digits": 20},
    }
    if hyperparams is not None:
        spec["hyperparams"] = hyperparams
    return spec


def _by_method(spec: dict) -> dict:
    return {t.method: t for t in GridSpec.from_dict(spec).expand()}


def test_schedule_and_critic_settings_reach_make_and_change_trial_id():
    plain = _by_method(_spec())
    set_ = _by_method(_spec({
        "madry": {"eps_warmup_epochs": 0, "lr_schedule": "cosine"},
        "er": {"critic_optimizer": "adam", "critic_lr": 1e-3, "critic_steps": 2, "clip": 0.02, "critic_hidden": 64},
    }))
    for name in ("madry", "er"):
        assert set_[name].trial_id != plain[name].trial_id
    madry = make("madry", "digits", **set_["madry"].method_hyperparams())
    assert madry.hp["eps_warmup_epochs"] == 0 and madry.hp["lr_schedule"] == "cosine"
    er = make("er", "digits", **set_["er"].method_hyperparams())
    assert (er.hp["critic_optimizer"], er.hp["critic_steps"], er.hp["clip"]) == ("adam", 2, 0.02)
    assert er.critic.net[0].out_features == 64
    # Unset, they are not part of the trial config: ids of existing grids do not move.
    assert "eps_warmup_epochs" not in plain["madry"].hyperparams


def test_unknown_schedule_name_is_rejected_by_the_spec():
    with pytest.raises(ValueError, match="unknown hyperparameter"):
        GridSpec.from_dict(_spec({"madry": {"eps_warmup": 3}}))


def test_setting_outside_its_choices_is_rejected_by_the_spec():
    """The spec checks a setting against the Param's own choices, before any trial is built."""
    with pytest.raises(ValueError, match=r"spec.hyperparams.madry: madry: lr_schedule must be one of "
                                         r"\['constant', 'piecewise', 'cosine'\], got 'step'"):
        GridSpec.from_dict(_spec({"madry": {"lr_schedule": "step"}}))
    with pytest.raises(ValueError, match=r"spec.hyperparams.er: er: critic_optimizer must be one of \['adam', 'rmsprop'\]"):
        GridSpec.from_dict(_spec({"er": {"critic_optimizer": "sgd"}}))
    with pytest.raises(ValueError, match=r"spec.hyperparams.er: er: hyperparameter critic_steps=0 must be a number in \[1, inf\]"):
        GridSpec.from_dict(_spec({"er": {"critic_steps": 0}}))
