"""A grid spec is validated (``er-grid run --dry-run``, a job's preset) without the results
store: importing ``grid.spec`` must load neither pandas nor pyarrow. Checked in a fresh
interpreter, as ``python -X importtime -c "import grid.spec"`` would show them. ~1 s."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]


def test_import_grid_spec_loads_neither_pandas_nor_pyarrow():
    code = ("import sys, grid.spec; "
            "print(sorted(m for m in ('pandas', 'pyarrow') if m in sys.modules))")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", code], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip() == "[]"
    # importtime lists every module imported (on stderr): neither appears, not even a submodule.
    imported = [line.rsplit("|", 1)[-1].strip() for line in out.stderr.splitlines() if line.startswith("import time:")]
    assert imported and "grid.spec" in imported
    assert not [m for m in imported if m.split(".")[0] in ("pandas", "pyarrow")]
