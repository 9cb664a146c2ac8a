"""A defense from its own package in a grid beside a built-in method, on the session's Ray head.

The example package (tests/plugins/tiny_defense: its own pyproject.toml with an
``er_grid.methods`` entry point) is pip-installed into this environment, as the README says a
cluster set-up does on every node. Checked: ``noise_training`` trains and evaluates beside
``none``; a kill after the first evaluation batch and ``er-grid resume`` give the rows of an
uninterrupted run (tools/compare_stores.py); ``query`` and ``report`` show it; ``status``,
``query`` and ``report`` work in a process where the plugin cannot be imported.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from ray_helpers import REPO, straight_and_resumed

pytestmark = pytest.mark.ray

SPEC = {
    "experiment": "plugin_grid",
    "datasets": ["digits"],
    "methods": ["none", "noise_training"],
    "epochs": 2,
    "batch_size": 32,
    "eval_plan": {"digits": [{"attack": "pgd", "eps": [0.1], "options": {"steps": 5}},
                             {"attack": "fgsm", "eps": [0.1]}]},
    "eval_n": 40,
    "eval_batch_size": 20,
    "max_failures": 0,
}


@pytest.fixture(scope="module")
def installed_plugin(tmp_path_factory):
    source = tmp_path_factory.mktemp("plugin") / "tiny_defense"
    shutil.copytree(REPO / "tests" / "plugins" / "tiny_defense", source)  # the build writes beside its source
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", str(source)]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    try:
        yield
    finally:
        subprocess.run([sys.executable, "-m", "pip", "uninstall", "-q", "-y", "tiny-defense"], capture_output=True,
                       timeout=300)


@pytest.fixture(scope="module")
def experiments(ray_head, installed_plugin, tmp_path_factory) -> tuple[Path, Path]:
    return straight_and_resumed(ray_head, SPEC, tmp_path_factory.mktemp("plugin_grid"))


def test_a_killed_and_resumed_plugin_grid_equals_an_uninterrupted_one(experiments):
    straight, resumed = experiments
    same = subprocess.run([sys.executable, "tools/compare_stores.py", str(straight), str(resumed)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)
    assert same.returncode == 0, same.stdout[-3000:] + same.stderr[-3000:]


def test_query_report_and_status_show_it_even_where_it_cannot_be_imported(experiments):
    straight, _ = experiments

    def cli(command: str, block: bool) -> subprocess.CompletedProcess:
        code = ("import sys\n" + ("sys.modules['tiny_defense'] = None\n" if block else "")
                + f"from grid.cli import main\nsys.exit(main([{command!r}, {str(straight)!r}]))")
        return subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)

    for command in ("query", "report", "status"):
        plain, blocked = cli(command, False), cli(command, True)
        assert plain.returncode == 0 and blocked.returncode == 0, (command, blocked.stderr[-3000:])
        if command != "status":
            assert "noise_training" in plain.stdout or "Noise training" in plain.stdout, plain.stdout[-2000:]
            assert blocked.stdout == plain.stdout
        else:
            assert "done 2" in blocked.stdout, blocked.stdout[-2000:]
