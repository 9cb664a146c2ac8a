"""The fidelity job's presets are valid grids of the promised shape; a dry run prints them.

Runtime: < 1 s.
"""

from __future__ import annotations

import sys
from pathlib import Path

from grid.cli.job import job_main
from grid.spec import GridSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from fidelity import PAPER, PRESETS, SMOKE  # noqa: E402

METHODS = {"none", "madry", "trades", "er", "er_minus", "e_cla"}


def test_paper_preset_is_the_papers_mnist_setting_on_one_gpu():
    trials = GridSpec.from_dict(PAPER).expand()
    assert {t.method for t in trials} == METHODS and len(trials) == len(METHODS)
    assert {t.dataset for t in trials} == {"mnist"} and {t.eval_n for t in trials} == {1000}
    assert {t.train_eps for t in trials if t.method in ("madry", "trades", "er")} == {0.3}
    plan = {(i.attack, i.eps, i.options.get("steps"), i.options.get("max_queries")) for i in trials[0].eval_plan}
    # The paper's PGD-40 sweep points, ε 0 and 0.5 and the convergence probe and FGSM for the
    # sanity checks (eps0_mismatch, no_decay, pgd_unconverged, fgsm_stronger).
    assert plan == {("pgd", 0.0, 40, None), ("pgd", 0.1, 40, None), ("pgd", 0.2, 40, None), ("pgd", 0.3, 40, None),
                    ("pgd", 0.5, 40, None), ("pgd_probe", 0.3, None, None), ("fgsm", 0.3, None, None),
                    ("autoattack", 0.3, None, None), ("rays", 0.3, None, 10_000)}
    # Every trial fits on one GPU at once.
    assert sum(t.resources["gpu"] for t in trials) <= 1


def test_smoke_preset_has_the_same_shape_on_digits(capsys):
    paper, smoke = GridSpec.from_dict(PAPER).expand(), GridSpec.from_dict(SMOKE).expand()
    assert [t.method for t in smoke] == [t.method for t in paper]
    assert [i.attack for i in smoke[0].eval_plan] == [i.attack for i in paper[0].eval_plan]
    assert {t.resources["gpu"] for t in smoke} == {0}
    assert job_main(PRESETS, default="paper", argv=["--preset", "smoke", "--dry-run"]) == 0
    assert "6 trials (digits: 6)" in capsys.readouterr().out
