"""Every command in the README's code blocks is exercised somewhere, and the list says where;
every Python, YAML and TOML snippet runs (or is checked) as written.

:data:`EXERCISED_BY` maps each command (by prefix) to the tests, or ``make demo``, that run
it; the test fails on a README command with no entry, and on an entry whose test no longer
exists. Commands no test can run are listed in :data:`NOT_RUN_BY_TESTS` with the reason.
:data:`SNIPPETS` maps each Python block to the test that executes it verbatim, against the
experiment it names: the Ray-free ones here; the one that names ``make demo``'s experiment in
``tests/grid/scenarios/test_readme_snippets.py``, beside the session's smoke grid (the same
preset), so this file stays cheap enough for ``make test-clean-clone``.
The YAML example must be a valid GridSpec with ``seeds``, and the local-head recipe must use
the flags ``make demo`` starts its head with (grid/demo.py runs the same steps).
"""

from __future__ import annotations

import importlib.util
import re
import shlex
from pathlib import Path

import pytest
import torch
import yaml

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()

DEMO = "make demo (grid/demo.py)"
E2E = "tests/grid/scenarios/test_e2e.py::test_ray_job_submit_smoke_preset"
CLUSTER = "tests/grid/cli/test_cli.py::test_cluster_yaml_is_valid_and_locked_down"
S3 = "tests/grid/scenarios/test_e2e.py::test_object_store_storage_run_status_query"
SLURM = "tests/grid/scenarios/test_slurm.py::test_the_grid_runs_through_sbatch_onto_a_folder_declared_shared"

#: README command prefix → where it runs ("path::test" or make demo / CI).
EXERCISED_BY: dict[str, list[str]] = {
    "make demo": [DEMO],
    "make test": [".ci/run"],
    "er-grid data fetch": ["tests/grid/cli/test_data_cli.py::test_fetch_then_check_in_the_default_data_root",
                           "tests/grid/cli/test_data_cli.py::test_check_names_the_damaged_file_and_the_fix"],
    "er-grid data check": ["tests/grid/cli/test_data_cli.py::test_fetch_then_check_in_the_default_data_root"],
    "er-grid run": [S3, "tests/grid/cli/test_cli.py::test_invalid_spec_names_the_field"],
    "er-grid status": [S3, DEMO],
    "er-grid resume": ["tests/grid/scenarios/test_resume.py::test_kill_in_training_and_evaluation_then_resume_from_moved_folder"],
    "er-grid query": [E2E, "tests/grid/cli/test_cli.py::test_query_gives_each_attack_and_the_worst_case", DEMO],
    "er-grid report": ["tests/grid/cli/test_cli.py::test_report_prints_markdown_tables",
                       "tests/grid/cli/test_cli.py::test_report_writes_figures"],
    "python jobs/full_grid.py --dry-run": ["tests/grid/cli/test_cli.py::test_dry_run_prints_trials_and_gpu_hours"],
    "python jobs/full_grid.py --preset smoke": [E2E, DEMO],
    "export RAY_AUTH_MODE=token": [DEMO, E2E],
    "ray get-auth-token --generate": [DEMO, E2E],
    "ray start --head": [DEMO, E2E],
    "er-grid submit": [E2E, DEMO, "tests/grid/cli/test_provenance_and_pipes.py::test_rows_through_the_job_path_carry_the_same_code_version_as_er_grid_run"],
    # Need AWS: tests validate the config these read against Ray's own schema instead.
    "ray up cluster.yaml": [CLUSTER],
    "ray dashboard cluster.yaml": [CLUSTER],
    "ray down cluster.yaml": [CLUSTER],
    "er-grid status s3://": [S3],
    "er-grid query s3://": [S3],
    "er-grid report s3://": ["tests/grid/cli/test_cli.py::test_report_prints_markdown_tables", S3],
    # The smoke preset through the trainable's own steps, and its dry run through the job file.
    "python jobs/fidelity.py --preset smoke": ["tests/grid/report/test_sanity_report.py::test_flags_are_stored_per_trial",
                                               "tests/grid/scenarios/test_fidelity_job.py::test_smoke_preset_has_the_same_shape_on_digits"],
    "pip install ./tests/plugins/tiny_defense": [
        "tests/grid/scenarios/test_plugin_grid.py::test_a_killed_and_resumed_plugin_grid_equals_an_uninterrupted_one"],
    "python jobs/fidelity.py --no-ray": ["tests/er_core/test_fidelity_run.py::test_runs_with_er_core_alone_and_writes_the_table"],
    # The SLURM recipe on a one-machine SLURM cluster: the same script, one node, no GPU (the
    # multi-node worker loop and --gpus-per-task are not run), `er-grid run` as the driver.
    "export ER_GRID_VENV": [SLURM],
    "sbatch": [SLURM, "tests/grid/scenarios/test_resume.py::test_kill_in_training_and_evaluation_then_resume_from_moved_folder"],
    "squeue": [SLURM],
    "tools/slurm_local.sh": [SLURM],
    "python jobs/full_grid.py --dry-run --preset smoke --calibrate": [
        "tests/grid/scenarios/test_readme_snippets.py::test_calibrate_command_runs_on_the_demo_experiment"],
}

#: Commands in the README that no test runs, and why.
NOT_RUN_BY_TESTS = {
    "python jobs/fidelity.py --preset paper": "the paper preset needs a GPU (MNIST, PGD-40 training); its spec is "
                                         "checked by tests/grid/scenarios/test_fidelity_job.py and the same code runs "
                                         "the smoke preset",
    "ray stop": "stops every Ray process of the user on the machine, the test session's head "
                "included; make demo and the tests stop their own head with the SIGTERM that "
                "`ray stop` sends, to their `ray start --block` only",
    "pip install -e . boto3": "needs the internet; `make` installs the same package (and boto3 "
                              "through the dev extra) into .venv",
    "pip install tensorboard": "needs the internet; TensorBoard is not a dependency of er-grid",
    "tensorboard --logdir": "TensorBoard is not installed by `make`; the event files it reads (epoch axis, "
                            "robust accuracies once) are checked by tests/grid/run/test_watching_a_grid.py::"
                            "test_tensorboard_plots_training_by_epoch_and_robust_accuracy_once",
}


#: A line of each Python block of the README → the test that runs the block as written.
SNIPPETS: dict[str, str] = {
    'grid.load_model("results/demo/smoke", trial_id)':
        "tests/grid/scenarios/test_readme_snippets.py::test_load_model_snippet_runs_against_the_demo_experiment",
    "table = grid.benchmark(": "tests/test_readme.py::test_benchmark_snippet_writes_where_the_readme_says",
    "from er_core.evaluate import attack_batch": "tests/test_readme.py::test_er_core_snippet_runs",
    "class NoiseTraining(Method):": "tests/test_readme.py::test_plugin_snippets_are_the_plugin_the_tests_install",
    "results = tune_results(": "tests/grid/run/test_watching_a_grid.py::test_the_readme_result_grid_snippet_names_the_ids_apart",
}


def python_blocks(text: str = README) -> list[str]:
    """Bodies of the README's fenced ``python`` blocks."""
    return re.findall(r"```python\n(.*?)```", text, re.S)


def snippet(marker: str) -> str:
    """The one Python block of the README that holds ``marker``."""
    (block,) = [b for b in python_blocks() if marker in b]
    return block


def run_snippet(marker: str) -> dict:
    """Execute the README's block holding ``marker`` as written; its variables afterwards."""
    namespace: dict = {"__name__": "readme_snippet"}
    exec(compile(snippet(marker), "README.md", "exec"), namespace)
    return namespace


def shell_blocks(text: str) -> list[str]:
    """Bodies of fenced blocks tagged bash/sh or untagged, and of 4-space indented blocks."""
    blocks = [body for lang, body in re.findall(r"```(\w*)\n(.*?)```", text, re.S) if lang in ("", "bash", "sh")]
    unfenced = re.sub(r"```.*?```", "", text, flags=re.S)
    blocks += ["\n".join(line[4:] for line in m.group(0).splitlines())
               for m in re.finditer(r"(?:^    \S.*\n)+", unfenced, re.M)]
    return blocks


def commands(text: str) -> list[str]:
    """Each command line of the shell blocks: continuations joined, comments and blank
    lines dropped, whitespace collapsed."""
    out = []
    for block in shell_blocks(text):
        for line in block.replace("\\\n", " ").splitlines():
            line = re.sub(r"\s+#\s.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(" ".join(line.split()))
    return out


def where(command: str) -> str | None:
    """The longest EXERCISED_BY / NOT_RUN_BY_TESTS prefix of ``command``."""
    keys = [k for k in (*EXERCISED_BY, *NOT_RUN_BY_TESTS) if command.startswith(k)]
    return max(keys, key=len) if keys else None


def test_every_readme_command_is_exercised_or_listed_with_a_reason():
    found = commands(README)
    assert len(found) >= 20 and "make demo" in found  # the parser sees the README's blocks
    unlisted = [c for c in found if where(c) is None]
    assert not unlisted, f"README commands no test is listed for (add them to EXERCISED_BY): {unlisted}"
    # Every entry is used: a stale entry would hide a command that was renamed.
    used = {where(c) for c in found}
    assert set(EXERCISED_BY) | set(NOT_RUN_BY_TESTS) == used, set(EXERCISED_BY) - used


def test_every_python_snippet_is_run_by_a_test():
    blocks = python_blocks()
    assert len(blocks) >= 4
    for block in blocks:
        found = [marker for marker in SNIPPETS if marker in block]
        assert len(found) == 1, f"README Python block without one SNIPPETS entry:\n{block}"
    for item in SNIPPETS.values():
        path, name = item.split("::")
        assert f"def {name}(" in (REPO / path).read_text(), f"{item} does not exist"


def test_listed_tests_exist():
    for prefix, evidence in EXERCISED_BY.items():
        for item in evidence:
            if "::" not in item:
                continue
            path, name = item.split("::")
            assert f"def {name}(" in (REPO / path).read_text(), f"{prefix!r}: {item} does not exist"
    ci = (REPO / ".ci" / "run").read_text()
    assert "make test\n" in ci and "make test-clean-clone" in ci


def test_local_head_recipe_uses_the_demo_head_flags():
    demo = (REPO / "grid" / "demo.py").read_text()
    (start,) = [c for c in commands(README) if c.startswith("ray start --head")]
    for flag in shlex.split(start)[2:]:
        assert flag in demo or flag.split("=")[0] + "={" in demo, f"{flag} is not how make demo starts its head"
    (submit,) = [c for c in commands(README) if c.startswith("er-grid submit") and "--preset smoke" in c]
    for part in ("submit", "--address", "jobs/full_grid.py", "--preset", "--storage"):
        assert part in submit and f'"{part}"' in demo, part
    assert '"RAY_AUTH_MODE": "token"' in demo and '"get-auth-token", "--generate"' in demo


def test_yaml_example_is_a_valid_spec_with_seeds():
    from grid.spec import GridSpec

    # The first YAML block is the full example; later ones are fragments of a spec (e.g. models:).
    example = re.findall(r"```yaml\n(.*?)```", README, re.S)[0]
    raw = yaml.safe_load(example)
    spec = GridSpec.from_dict(raw)
    assert list(spec.seeds) == raw["seeds"] and len(raw["seeds"]) > 1
    trials = spec.expand()
    assert {t.seed for t in trials} == set(raw["seeds"])
    assert len(trials) % len(raw["seeds"]) == 0  # every configuration once per seed


def test_architecture_names_every_module_and_result_column():
    """ARCHITECTURE.md's module map and results schema follow the code: a new module or
    column needs its line there."""
    from grid.store import ROW_SCHEMA, TRIAL_SCHEMA

    doc = (REPO / "ARCHITECTURE.md").read_text()
    modules = [p for pkg in ("er_core", "grid") for p in sorted((REPO / pkg).glob("*.py")) if p.name != "__init__.py"]
    modules += [p for p in sorted((REPO / "er_core").iterdir()) if (p / "__init__.py").is_file()]
    missing = [str(p.relative_to(REPO)) for p in modules
               if f"`{p.name}`" not in doc and f"`{p.name}/`" not in doc]
    # grid's rooms: every package in the floors table, every module of it by <room>/<module>.
    rooms = [p for p in sorted((REPO / "grid").iterdir()) if (p / "__init__.py").is_file()]
    missing += [f"grid/{room.name}/" for room in rooms if f"`{room.name}/`" not in doc]
    missing += [f"grid/{room.name}/{m.name}" for room in rooms for m in sorted(room.glob("*.py"))
                if m.name != "__init__.py" and f"`{room.name}/{m.name}`" not in doc]
    assert not missing, f"add these to ARCHITECTURE.md's module map: {missing}"
    columns = [f.name for f in (*ROW_SCHEMA, *TRIAL_SCHEMA) if f"`{f.name}`" not in doc]
    assert not columns, f"add these columns to ARCHITECTURE.md's results schema: {columns}"


def test_no_code_names_a_path_outside_the_repository():
    """A fresh clone has nothing beside it: code may not reach for ``..`` or this machine's
    folders (datasets come from the data root, documentation from the repository)."""
    outside = re.compile(r'(?<![.\w])\.\./|"\.\."|/work/')
    files = [p for d in ("er_core", "grid", "jobs", "bench") for p in (REPO / d).rglob("*.py")]
    hits = [f"{p.relative_to(REPO)}:{i}" for p in files
            for i, line in enumerate(p.read_text().splitlines(), 1) if outside.search(line)]
    assert not hits, hits


# --------------------------------------------------------------------------- the snippets, run


def test_er_core_snippet_runs():
    ran = run_snippet("from er_core.evaluate import attack_batch")
    rows = ran["rows"]
    assert len(rows) == 100 and {"correct_clean", "correct_adv", "linf"} <= set(rows[0])
    assert max(r["linf"] for r in rows) <= 0.1 + 1e-6  # the ε it names


def test_benchmark_snippet_writes_where_the_readme_says(tmp_path, monkeypatch):
    from grid.cli import main
    from grid.store import load

    monkeypatch.chdir(tmp_path)
    table = run_snippet("table = grid.benchmark(")["table"]
    assert "rows are in\n`results/my_model/results`" in README  # the folder the text names
    assert set(table["attack"]) == {"pgd"} and table["n"].max() == 100
    assert len(load("results/my_model/results")) == 100
    assert main(["query", "results/my_model", "--format", "csv"]) == 0  # as the text says


def test_plugin_snippets_are_the_plugin_the_tests_install(digits):
    """The class block runs as written and trains like the example plugin's own class, on the
    same batch from the same seed; the TOML block is the plugin's entry point."""
    plugin = REPO / "tests" / "plugins" / "tiny_defense"
    spec = importlib.util.spec_from_file_location("tiny_defense_readme", plugin / "tiny_defense" / "defense.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    written = run_snippet("class NoiseTraining(Method):")["NoiseTraining"]
    losses = []
    for cls in (written, module.NoiseTraining):
        assert (cls.name, cls.display_name) == ("noise_training", "Noise training")
        assert cls.PARAMS["noise_std"] == module.NoiseTraining.PARAMS["noise_std"]
        torch.manual_seed(0)
        method = cls("digits")
        torch.manual_seed(1)
        losses.append(float(method.loss(digits.x_train[:16], digits.y_train[:16])[0].detach()))
    assert losses[0] == losses[1]
    (toml,) = re.findall(r"```toml\n(.*?)```", README, re.S)
    assert toml.strip() in (plugin / "pyproject.toml").read_text()


def test_models_fragment_is_a_valid_part_of_the_example_spec(tmp_path, monkeypatch):
    """The ``models:`` block beside the full YAML example, with the weights file it names."""
    from er_core.nets import build_model
    from grid.spec import GridSpec

    monkeypatch.chdir(tmp_path)
    torch.save(build_model(dataset="digits").state_dict(), "net.pt")
    example, fragment = re.findall(r"```yaml\n(.*?)```", README, re.S)[:2]
    spec = GridSpec.from_dict({**yaml.safe_load(example), **yaml.safe_load(fragment)})
    assert {t.method for t in spec.expand()} >= {"model:plain_net", "none"}
