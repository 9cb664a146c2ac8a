"""The shared Ray head fixture of the grid tests (``LocalHead`` lives in ``grid.demo``).

The fixture ``ray_head`` (session scope, stopped by its finaliser) is made available to
every grid test module through ``tests/grid/conftest.py``; tests get a token-authenticated
2-CPU head whose token lives under a temporary HOME, never in the repo.
"""

from __future__ import annotations

import subprocess

import pytest

from grid.demo import BIN, REPO, LocalHead


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """One token-authenticated local Ray head (2 CPUs) for every test of the session."""
    head = LocalHead.start(tmp_path_factory.mktemp("ray_head"))
    try:
        yield head
    finally:
        head.stop()


def run_cli(head: LocalHead, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """``er-grid ARGS`` as a separate driver connected to ``head``."""
    return subprocess.run([str(BIN / "er-grid"), *args], env=head.env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
