"""The paper preset's dry run shows, for every dataset, the sanity checks' own plan points (PGD
at ε 0.5 for ``no_decay``, the 100 × 5 convergence probe beside PGD at the paper's ε, ε 0)
with their gradient passes, and names the checks a plan cannot run instead of hiding them.
Runtime: < 2 s (no training)."""

from __future__ import annotations

import sys
from pathlib import Path

from er_core.attacks import make
from er_core.dataset_info import info
from grid.cli.job import dry_run_table
from grid.spec import GridSpec

REPO = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(REPO / "jobs"))
from full_grid import PAPER, SMOKE  # noqa: E402


def test_every_paper_dataset_plans_the_large_eps_point_and_the_probe():
    spec = GridSpec.from_dict(PAPER)
    text = dry_run_table(spec)
    for dataset in PAPER["datasets"]:
        trial = next(t for t in spec.expand() if t.dataset == dataset)
        pgd = sorted(float(i.eps) for i in trial.eval_plan if i.attack == "pgd")
        probe = [float(i.eps) for i in trial.eval_plan if i.attack == "pgd_probe"]
        assert pgd[0] == 0.0 and pgd[-1] == 0.5, dataset
        assert probe == [info(dataset).paper_eps] and probe[0] in pgd, dataset  # beside the plan's PGD
        line = next(x for x in text.splitlines() if x.startswith(f"{dataset} plan:"))
        passes = make("pgd_probe", eps=probe[0]).gradient_passes()
        assert f"pgd_probe ε {probe[0]:g} [{passes:,.0f} passes/example]" in line
        assert "0…0.5" in line
        cannot = next(x for x in text.splitlines() if x.startswith(f"{dataset} sanity checks the plan cannot run:"))
        for check in ("no_decay", "pgd_unconverged", "eps0_mismatch", "fgsm_stronger", "pgd_overestimates"):
            assert check not in cannot, (dataset, cannot)


def test_a_plan_without_the_points_names_the_checks_it_cannot_run():
    text = dry_run_table(GridSpec.from_dict(SMOKE))
    cannot = next(x for x in text.splitlines() if x.startswith("digits sanity checks the plan cannot run:"))
    assert "no_decay (the plan has no ℓ∞ PGD at ε ≥ 0.5)" in cannot
    assert "pgd_unconverged" in cannot and "eps0_mismatch" in cannot
