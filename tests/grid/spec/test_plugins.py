"""Methods from outside the repository (er_core.methods.plugins), checked without Ray.

Checked: a ``module:Class`` name works without installation when the module is importable, and
trains and evaluates through er_core like a built-in; each way of breaking the contract (no
train_step, a Param without bounds, a model that rejects [0, 1] images, not a Method, an
unimportable module, an unknown name) is one line naming the problem and exit 2 from
``er-grid run`` before any trial starts; the plugin's source hash is part of trial_id, so an
edited plugin is a new trial, a run into the old experiment is refused, and a trial planned
with the old code refuses to start on the new.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[3]
PLUGINS = REPO / "tests" / "plugins"
SPEC = {"experiment": "plugins", "datasets": ["digits"], "methods": ["none", "tiny_defense.defense:NoiseTraining"],
        "epochs": 1, "eval_plan": {"digits": [{"attack": "fgsm", "eps": [0.1]}]}, "eval_n": 20, "eval_batch_size": 20}


def env_with(*paths: Path) -> dict:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([*map(str, paths), os.environ.get("PYTHONPATH", "")])}


def python(code: str, *paths: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env_with(*paths), capture_output=True,
                          text=True, timeout=300)


def test_module_class_name_works_without_installation():
    code = f"""
import json, er_core.data, er_core.evaluate
from er_core.methods import make
from er_core.train import fit
from grid.spec import GridSpec
trials = GridSpec.from_dict({SPEC!r}).expand()
plugin = [t for t in trials if t.method != "none"][0]
method = make(plugin.method, "digits", **plugin.method_hyperparams())
data = er_core.data.load("digits")
fit(method, data, epochs=1, batch_size=64, seed=0)
rows = er_core.evaluate.attack_batch(method.model.eval(), "fgsm", data.x_test[:20], data.y_test[:20], 0.1)
print(json.dumps({{"identity": plugin.method_identity, "name": plugin.name, "rows": len(rows),
                  "clean": sum(r["correct_clean"] for r in rows)}}))
"""
    done = python(code, PLUGINS / "tiny_defense")
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out["identity"]["qualname"] == "tiny_defense.defense:NoiseTraining" and out["identity"]["source_sha256"]
    assert ":" not in out["name"] and out["rows"] == 20 and out["clean"] > 10  # it trained


BROKEN = {
    "broken_defenses:NoTrainStep": "defines neither train_step nor loss",
    "broken_defenses:UnboundedParam": "hyperparameter 'strength' is a Param without bounds",
    "broken_defenses:FlatOnly": "its model does not take a [0, 1] batch of digits images of shape (2, 1, 8, 8)",
    "broken_defenses:NotAMethod": "is not a subclass of er_core.methods.Method",
    "no_such_package.defense:Thing": "cannot import module 'no_such_package.defense'",
    "no_such_entry_point": "unknown method 'no_such_entry_point'; valid: ",
}


def test_each_broken_plugin_is_one_error_naming_the_problem():
    code = f"""
import json
from grid.spec import GridSpec
said = {{}}
for name in {list(BROKEN)!r}:
    try:
        GridSpec.from_dict({{**{SPEC!r}, "methods": ["none", name]}})
    except ValueError as err:
        said[name] = str(err)
print(json.dumps(said))
"""
    done = python(code, PLUGINS)
    assert done.returncode == 0, done.stderr[-3000:]
    said = json.loads(done.stdout.strip().splitlines()[-1])
    for name, problem in BROKEN.items():
        assert name in said and problem in said[name] and said[name].startswith("spec.methods: "), (name, said.get(name))
        assert "\n" not in said[name]


def test_a_broken_plugin_stops_er_grid_run_with_exit_2_before_any_trial(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_text(yaml.safe_dump({**SPEC, "methods": ["none", "broken_defenses:UnboundedParam"]}))
    done = subprocess.run([str(Path(sys.executable).parent / "er-grid"), "run", str(spec), "--storage", str(tmp_path / "s")],
                          cwd=REPO, env=env_with(PLUGINS), capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stdout[-2000:] + done.stderr[-2000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and BROKEN["broken_defenses:UnboundedParam"] in lines[0], done.stderr
    assert not (tmp_path / "s").exists()  # nothing started, nothing written


def test_an_edited_plugin_is_a_new_trial_and_never_runs_under_the_old_id(tmp_path):
    copy = tmp_path / "pkg"
    shutil.copytree(PLUGINS / "tiny_defense", copy)
    code = f"""
import json
from grid.spec import GridSpec
t = [t for t in GridSpec.from_dict({SPEC!r}).expand() if t.method != "none"][0]
print(json.dumps(t.to_dict()))
"""
    before = python(code, copy)
    assert before.returncode == 0, before.stderr[-3000:]
    source = copy / "tiny_defense" / "defense.py"
    source.write_text(source.read_text() + "\n# a changed plugin\n")
    after = python(code, copy)
    old, new = (json.loads(p.stdout.strip().splitlines()[-1]) for p in (before, after))
    assert old["method_identity"]["source_sha256"] != new["method_identity"]["source_sha256"]
    check = f"""
from grid.spec import GridSpec, TrialConfig
from grid.trial.trainable import trial_method
old = TrialConfig.from_dict({old!r})
new = TrialConfig.from_dict({new!r})
assert old.trial_id != new.trial_id
try:
    trial_method(old)
except RuntimeError as err:
    print("refused:", err)
trial_method(new)
"""
    done = python(check, copy)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "refused:" in done.stdout and "changed since the trial was planned" in done.stdout
