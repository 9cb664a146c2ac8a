"""Trials no node can ever host are refused before any trial starts (one line, exit 2), never
left PENDING forever: on the shared 2-CPU, GPU-less test head (real Ray) a spec asking for
``gpu: 1`` or ``cpu: 64``; and the autoscaler's node types read from a cluster config
(the repository's ``cluster.yaml`` and one with declared resources).

Runtime: ~40 s with the head already up (each refused run is a driver joining the head)."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pytest
import yaml

from grid.experiment import record_spec
from grid.run.feasibility import autoscaler_offers, recorded_demands, spec_demands
from grid.spec import GridSpec
from ray_helpers import run_cli

REPO = Path(__file__).resolve().parents[3]
SPEC = {
    "experiment": "feasible", "datasets": ["digits"], "methods": ["none"], "seeds": [0, 1], "epochs": 1,
    "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 8,
}


@pytest.mark.ray
@pytest.mark.parametrize("resources, needs", [
    ({"cpu": 1, "gpu": 1}, "needs cpu 1, gpu 1"),
    ({"cpu": 64, "gpu": 0}, "needs cpu 64, gpu 0"),
])
def test_an_infeasible_trial_is_one_line_before_any_trial_starts(ray_head, tmp_path, resources, needs):
    spec_file = tmp_path / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(dict(SPEC, resources=resources)))
    started = time.monotonic()
    done = run_cli(ray_head, "run", str(spec_file), "--storage", str(tmp_path / "storage"), timeout=120)
    took = time.monotonic() - started
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    errors = [line for line in done.stderr.splitlines() if line.startswith("er-grid: error:")]
    assert len(errors) == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
    first = sorted(t.name for t in GridSpec.from_dict(dict(SPEC, resources=resources,
                                                           storage_path=str(tmp_path))).expand())
    assert f"trial {first[0]} (and 1 other trial(s)) {needs} but the largest node offers cpu 2, gpu 0" in errors[0]
    experiment = tmp_path / "storage" / "feasible"
    # Refused before anything is written: no spec record, no trial folder, no results store.
    assert not experiment.exists() or not any(experiment.iterdir()), sorted(experiment.rglob("*"))
    assert took < 60, f"refused after {took:.0f} s"


def test_the_repository_cluster_yaml_offers_its_node_types():
    offers = dict(autoscaler_offers(REPO / "cluster.yaml"))
    # The head declares CPU 0 / GPU 0; the GPU workers' resources are detected on the node,
    # so the file cannot refute any demand for them.
    assert offers["node type head"] == {"cpu": 0.0, "gpu": 0.0}
    assert offers["node type gpu_worker"] == {"cpu": math.inf, "gpu": math.inf}


def test_declared_node_types_are_read_and_never_launched_ones_left_out(tmp_path):
    config = tmp_path / "cluster.yaml"
    config.write_text(yaml.safe_dump({
        "head_node_type": "head",
        "available_node_types": {
            "head": {"resources": {"CPU": 2, "GPU": 0}, "max_workers": 0},
            "gpu": {"resources": {"CPU": 8, "GPU": 1}, "max_workers": 4},
            "never": {"resources": {"CPU": 96, "GPU": 8}, "max_workers": 0},
        },
    }))
    offers = dict(autoscaler_offers(config))
    assert offers == {"node type head": {"cpu": 2.0, "gpu": 0.0}, "node type gpu": {"cpu": 8.0, "gpu": 1.0}}


def test_resume_checks_the_recorded_per_dataset_resources(tmp_path):
    spec = GridSpec.from_dict(dict(SPEC, resources={"cpu": 2, "gpu": 0.5}, storage_path=str(tmp_path)))
    record_spec(spec, str(tmp_path / "feasible"))
    assert recorded_demands(str(tmp_path / "feasible")) == spec_demands(spec)
    assert set(spec_demands(spec).values().__iter__().__next__()) == {"cpu", "gpu"}
    assert all(need == {"cpu": 2, "gpu": 0.5} for need in recorded_demands(str(tmp_path / "feasible")).values())
