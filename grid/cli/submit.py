"""``er-grid submit``: ``ray job submit`` with the submitting checkout's code version sent along.

    er-grid submit [--address URL] [--runtime-env FILE] [--working-dir DIR] -- ENTRYPOINT ...

``ray job submit --working-dir .`` uploads a copy of the tree without ``.git``
(``jobs/runtime_env.yaml`` leaves it out, and Ray's upload limit would refuse most histories),
so a driver and trials running there can no longer tell which commit they are: their rows
recorded only the package version. Here, where the checkout is, the version is resolved
(commit, ``.dirty`` when tracked files differ) and added to the runtime env's ``env_vars`` as
``ER_GRID_CODE_VERSION``; Ray hands a job's ``env_vars`` to its driver and every worker, and
:func:`grid.common.fingerprint.er_grid_code_version` reads it first. Everything else is Ray's
own ``ray job submit`` (its output, its exit code).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Optional

from grid.common.fingerprint import CODE_VERSION_ENV, checkout_code_version, er_grid_code_version

from .common import UsageError

DEFAULT_RUNTIME_ENV = "jobs/runtime_env.yaml"  # relative to the working directory


def add_submit_parser(sub) -> None:
    p = sub.add_parser("submit", help="ray job submit, with this checkout's code version sent to the job",
                       description=__doc__.split("\n\n")[0])
    p.add_argument("--address", help="the cluster's job API, e.g. http://127.0.0.1:8265 (default: Ray's "
                                     "RAY_ADDRESS / RAY_API_SERVER_ADDRESS)")
    p.add_argument("--runtime-env", metavar="FILE",
                   help=f"runtime env YAML (default: {DEFAULT_RUNTIME_ENV} in the working directory, if there)")
    p.add_argument("--working-dir", default=".", metavar="DIR",
                   help="the tree to upload; its git checkout gives the code version (default: .)")
    p.add_argument("entrypoint", nargs=argparse.REMAINDER, metavar="-- ENTRYPOINT",
                   help="the job's command, after --, e.g. -- python jobs/full_grid.py --preset smoke --storage DIR")
    p.set_defaults(func=cmd_submit)


def cmd_submit(args) -> int:
    entrypoint = list(args.entrypoint)
    if entrypoint[:1] == ["--"]:
        entrypoint = entrypoint[1:]
    if not entrypoint:
        raise UsageError("submit: give the job's command after --, e.g. "
                         "er-grid submit -- python jobs/full_grid.py --preset smoke --storage DIR")
    working_dir = Path(args.working_dir)
    if not working_dir.is_dir():
        raise UsageError(f"--working-dir: no such directory: {args.working_dir}")
    runtime_env = runtime_env_with_version(working_dir, args.runtime_env)
    version = runtime_env["env_vars"][CODE_VERSION_ENV]
    print(f"er-grid: submitting {working_dir} as code version {version}", file=sys.stderr)
    command = [ray_executable(), "job", "submit", *(["--address", args.address] if args.address else []),
               "--runtime-env-json", json.dumps(runtime_env), "--working-dir", str(working_dir), "--", *entrypoint]
    return subprocess.run(command).returncode


def runtime_env_with_version(working_dir: Path, runtime_env: Optional[str] = None) -> dict:
    """The runtime env (``runtime_env`` file, or the working directory's ``jobs/runtime_env.yaml``
    where there is one, else empty) with ``env_vars[ER_GRID_CODE_VERSION]`` set: the value in this
    environment when set (a version that already travelled here), else ``working_dir``'s checkout's."""
    import yaml

    path = Path(runtime_env) if runtime_env else working_dir / DEFAULT_RUNTIME_ENV
    if runtime_env and not path.is_file():
        raise UsageError(f"--runtime-env: no such file: {runtime_env}")
    loaded = yaml.safe_load(path.read_text()) if path.is_file() else {}
    if loaded is None:
        loaded = {}
    if not isinstance(loaded, dict):
        raise UsageError(f"--runtime-env: {path} is not a YAML mapping of runtime env fields")
    env_vars = loaded.get("env_vars") or {}
    if not isinstance(env_vars, dict):
        raise UsageError(f"--runtime-env: {path}: env_vars must be a mapping of names to values")
    if CODE_VERSION_ENV in env_vars:
        # Two sources for one fact: the file's value would silently win over the checkout's.
        raise UsageError(f"--runtime-env: {path} sets {CODE_VERSION_ENV}; leave it to er-grid submit, "
                         "which reads it from the checkout")
    # er_grid_code_version checks a value already in the environment before it travels on.
    travelled = os.environ.get(CODE_VERSION_ENV, "").strip()
    version = er_grid_code_version() if travelled else checkout_code_version(working_dir.resolve())
    return {**loaded, "env_vars": {**env_vars, CODE_VERSION_ENV: version}}


def ray_executable() -> str:
    """The ``ray`` CLI beside this Python (the project's venv), else the one on PATH."""
    beside = Path(sys.executable).parent / "ray"
    found = str(beside) if beside.is_file() else shutil.which("ray")
    if found is None:
        raise UsageError("submit: the ray command is not installed here (pip install 'ray[default]')")
    return found
