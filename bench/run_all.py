"""`make bench`: run every benchmark in bench/ in turn, each printing its own table.

Each bench_*.py measures a plain-PyTorch (or plain-loop) baseline in the same run and
prints the ratio, because this machine is shared and absolute numbers drift. Where the
baseline is an exact answer (bench_rays: the analytic optimum of a linear model) or code this
project does not ship (bench_rays: the RayS authors' figures, stored as documented constants),
the benchmark says so.
Pass --quick to give each benchmark its short setting.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent


def main(argv: list[str]) -> int:
    failures = []
    for script in sorted(BENCH_DIR.glob("bench_*.py")):
        print(f"\n=== {script.name} ===", flush=True)
        code = subprocess.call([sys.executable, str(script), *argv], cwd=BENCH_DIR.parent)
        if code != 0:
            failures.append(script.name)
    if failures:
        print(f"\nfailed: {', '.join(failures)}")
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
