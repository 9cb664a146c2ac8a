"""A spec's ``models:``: a network trained by plain PyTorch outside the grid, evaluated beside a
trained method through the session's Ray head.

Checked: the model's trial trains nothing (epochs 0) and evaluates the plan; a kill after the
first evaluation batch and ``er-grid resume`` give the rows of an uninterrupted run; its rows'
checkpoint hash is the loaded weights'; ``query`` and ``status`` show it.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from ray_helpers import REPO, run_cli, straight_and_resumed

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def experiments(ray_head, tmp_path_factory) -> tuple[Path, Path]:
    sys.path.insert(0, str(REPO / "tests" / "grid" / "run"))
    from test_benchmark import plain_pytorch_model

    tmp = tmp_path_factory.mktemp("external")
    weights = plain_pytorch_model(tmp / "net.pt")
    spec = {"experiment": "external", "datasets": ["digits"], "methods": ["none"], "epochs": 1, "batch_size": 64,
            "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}},
                                     {"attack": "fgsm", "eps": [0.1]}]},
            "eval_n": 40, "eval_batch_size": 20, "max_failures": 0,
            "models": [{"name": "plain_net", "factory": "er_core.nets:build_model", "weights": str(weights),
                        "dataset": "digits", "kwargs": {"dataset": "digits"}}]}
    return straight_and_resumed(ray_head, spec, tmp)


def test_the_external_model_is_evaluated_and_resumes_to_the_uninterrupted_rows(experiments, ray_head):
    import torch

    from er_core.nets import build_model
    from grid.store import load, load_trials
    from grid.trial.checkpoints import weights_hash

    straight, resumed = experiments
    same = subprocess.run([sys.executable, "tools/compare_stores.py", str(straight), str(resumed)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]
    rows = load(straight / "results", method="model:plain_net")
    assert len(rows) == 2 * 40 and set(rows["attack"]) == {"pgd", "fgsm"}
    net = build_model("digits")
    net.load_state_dict(torch.load(straight.parent.parent / "net.pt", weights_only=True))
    assert set(rows["checkpoint_hash"]) == {weights_hash(net)}
    trial = load_trials(straight / "results", method="model:plain_net").iloc[0]
    assert trial["epochs"] == 0 and trial["recipe"] == "external"
    import er_core.data
    import grid

    loaded = grid.load_model(str(straight), trial["trial_id"])  # from its weights file, not a checkpoint
    pgd = rows[rows["attack"] == "pgd"].sort_values("sample_idx")
    with torch.no_grad():
        x = er_core.data.load("digits").x_test[torch.tensor(pgd["sample_idx"].to_numpy())]
        assert loaded.model(x).argmax(1).tolist() == pgd["pred_clean"].tolist()
    # Its verdicts are what er_core's attack_batch gives on the same examples with the grid's batch
    # seeds (PGD draws random starts; FGSM draws nothing).
    from er_core.eval_subset import batch_seed, eval_batches
    from er_core.evaluate import attack_batch

    data = er_core.data.load("digits")
    for attack, options in (("pgd", {"steps": 5}), ("fgsm", {})):
        mine = rows[rows["attack"] == attack].set_index("sample_idx")
        for b, idx in enumerate(eval_batches("digits", 40, 0, 20)):
            torch.manual_seed(batch_seed(0, 0, attack, 0.1, b))
            x, y = data.test_examples(idx)
            for r in attack_batch(net.eval(), attack, x, y, 0.1, sample_idx=idx.tolist(), **options):
                assert (r["correct_clean"], r["correct_adv"]) == tuple(mine.loc[r["sample_idx"], ["correct_clean",
                                                                                                 "correct_adv"]])
    query = run_cli(ray_head, "query", str(straight), "--method", "model:plain_net")
    assert query.returncode == 0 and "model:plain_net" in query.stdout, query.stderr[-2000:]
    status = run_cli(ray_head, "status", str(straight))
    assert status.returncode == 0 and "done 2" in status.stdout, status.stdout[-2000:]
