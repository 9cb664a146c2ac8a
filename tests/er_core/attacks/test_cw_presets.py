"""C&W-L2's named settings: the Defense-GAN evaluation's (Athalye et al.'s notebook) beside ours,
resolved into the attack's fingerprint, reachable from a spec's evaluation plan, priced by
``gradient_passes`` and actually run without early abort."""

import pytest
import torch
from linear_models import TwoClassLinear
from torch import nn

from er_core.attack_spec import AttackSpec
from er_core.attacks import make as make_attack
from er_core.attacks.cw_l2 import PRESETS
from er_core.evaluate import attack_fingerprint

# The notebook's adversarial CarliniL2 call, written out: binary_search_steps=5,
# max_iterations=30000, learning_rate=1e-1, initial_const=1, abort_early=False; its five rounds
# raise c at most four times tenfold from c₀ = 1.
NOTEBOOK = {"search_steps": 5, "steps": 30_000, "lr": 0.1, "initial_const": 1.0, "abort_early": False,
            "max_const": 1e4}
OURS = {"search_steps": 9, "steps": 200, "lr": 0.01, "initial_const": 1e-2, "abort_early": True, "max_const": 1e6}


def settings(attack) -> dict:
    return {k: getattr(attack, k) for k in NOTEBOOK}


def test_defensegan_preset_builds_with_the_notebooks_values():
    notebook = make_attack("cw_l2", eps=0.0, preset="defensegan")
    assert settings(notebook) == NOTEBOOK and notebook.preset == "defensegan"
    assert notebook.gradient_passes() == 30_000 * 5  # steps × rounds, what the cost model prices
    ours = make_attack("cw_l2", eps=0.0)
    assert settings(ours) == OURS and ours.gradient_passes() == 200 * 9
    assert set(PRESETS) == {"default", "defensegan"}


def test_preset_changes_the_fingerprint_and_the_default_keeps_its_own():
    ours, notebook = make_attack("cw_l2", eps=0.0).config(), make_attack("cw_l2", eps=0.0, preset="defensegan").config()
    assert ours != notebook and notebook["preset"] == "defensegan"
    assert {k: notebook[k] for k in NOTEBOOK} == NOTEBOOK
    # The default preset is not named, so the rows written before presets existed still match.
    assert ours == {"attack": "cw_l2", "norm": "L2", "eps": 0.0, "steps": 200, "search_steps": 9, "lr": 0.01,
                    "confidence": 0.0, "initial_const": 0.01, "max_const": 1e6, "abort_early": True}
    assert make_attack("cw_l2", eps=0.0, preset="default").config() == ours
    assert attack_fingerprint("cw_l2", 0.0, preset="defensegan") != attack_fingerprint("cw_l2", 0.0)


def test_explicit_options_override_the_preset_and_bad_ones_fail():
    lighter = make_attack("cw_l2", eps=0.0, preset="defensegan", steps=3000)
    assert settings(lighter) == {**NOTEBOOK, "steps": 3000} and lighter.gradient_passes() == 3000 * 5
    assert lighter.config() != make_attack("cw_l2", eps=0.0, preset="defensegan").config()
    with pytest.raises(ValueError, match="unknown preset 'defense_gan'; valid presets: default, defensegan"):
        make_attack("cw_l2", eps=0.0, preset="defense_gan")
    with pytest.raises(ValueError, match="preset must be a str"):
        make_attack("cw_l2", eps=0.0, preset=None)
    with pytest.raises(ValueError, match="initial_const ≤ max_const"):
        make_attack("cw_l2", eps=0.0, preset="defensegan", max_const=0.5)  # c₀ = 1 above the ceiling
    with pytest.raises(ValueError, match="steps must be ≥ 1"):
        make_attack("cw_l2", eps=0.0, preset="defensegan", steps=0)


def test_preset_reaches_the_attack_from_an_evaluation_plan():
    item = {"attack": "cw_l2", "eps": [0.0], "options": {"preset": "defensegan"}}
    built = AttackSpec.from_dict({**item, "eps": 0.0}).build()
    assert settings(built) == NOTEBOOK
    from grid.spec import GridSpec  # the grid's own validation of the same plan item

    spec = GridSpec.from_dict({"experiment": "unit", "datasets": ["digits"], "methods": ["none"], "seeds": [0],
                               "epochs": 1, "eval_plan": {"digits": [item]}, "eval_n": 10})
    (trial,) = spec.expand()
    (planned,) = trial.eval_plan
    assert planned.options == {"preset": "defensegan"} and settings(planned.build()) == NOTEBOOK


def test_no_early_abort_runs_every_step_of_every_round():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(64, generator=g)
    x = 0.35 + 0.3 * torch.rand(6, 1, 8, 8, generator=g)
    model = TwoClassLinear(w, -(x.flatten(1) @ w).mean().item())
    y = model(x).argmax(1)
    result = make_attack("cw_l2", eps=0.0, preset="defensegan", steps=40)(model, x, y)
    assert result.extra["success"].all()
    # Five full rounds of 40 Adam steps each: nothing stops a round early.
    assert (result.queries == 40 * 5).all(), result.queries
    aborting = make_attack("cw_l2", eps=0.0, preset="defensegan", steps=40, abort_early=True)(model, x, y)
    assert (aborting.queries <= 40 * 5).all()


def test_an_example_never_fooled_stops_after_the_notebooks_five_rounds():
    class Constant(nn.Module):  # zero gradient: C&W can never succeed, so c only climbs
        def forward(self, x):
            return torch.tensor([[1.0, 0.0]]).expand(len(x), 2) + 0 * x.flatten(1).sum(1, keepdim=True)

    x, y = torch.full((2, 1, 8, 8), 0.5), torch.zeros(2, dtype=torch.long)
    notebook = make_attack("cw_l2", eps=0.0, preset="defensegan", steps=3)
    result = notebook(Constant(), x, y)
    # c = 1, 10, 100, 1e3, 1e4: five rounds of 3 steps, then c = 1e5 passes the ceiling.
    assert not result.extra["success"].any() and (result.queries == 3 * 5).all()
    assert result.queries.max() <= notebook.gradient_passes()
    # Our default ceiling climbs on, past the rounds gradient_passes counts (c up to 1e6).
    ours = make_attack("cw_l2", eps=0.0, preset="defensegan", steps=3, max_const=1e6)(Constant(), x, y)
    assert (ours.queries == 3 * 7).all()
