"""The shared Ray head fixture of the grid tests (``LocalHead`` lives in ``grid.demo``).

The fixture ``ray_head`` (session scope, stopped by its finaliser) is made available to
every grid test module through ``tests/grid/conftest.py``; tests get a token-authenticated
2-CPU head whose token lives under a temporary HOME, never in the repo.
"""

from __future__ import annotations

import socket
import subprocess

import pytest

from grid.demo import BIN, REPO, LocalHead, free_port


@pytest.fixture(scope="session")
def ray_head(tmp_path_factory):
    """One token-authenticated local Ray head (2 CPUs) for every test of the session.

    The first port it is given is already taken (a socket bound and listening here), as when
    another process wins the race for a port between its choice and Ray's bind: the head
    must come up on its retry with fresh ports (checked by test_e2e). That costs one failed
    ``ray start`` (a few seconds) instead of a second head start.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        first = [taken.getsockname()[1]]
        head = LocalHead.start(tmp_path_factory.mktemp("ray_head"),
                               port_source=lambda: first.pop() if first else free_port())
    try:
        yield head
    finally:
        head.stop()


def run_cli(head: LocalHead, *args: str, timeout: float = 240, **env: str) -> subprocess.CompletedProcess:
    """``er-grid ARGS`` as a separate driver connected to ``head``."""
    return subprocess.run([str(BIN / "er-grid"), *args], env=head.env(**env), cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
