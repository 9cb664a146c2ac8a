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


def straight_and_resumed(head: LocalHead, spec: dict, tmp) -> tuple:
    """Run ``spec`` twice on ``head``: once uninterrupted, once SIGKILLed after its first
    evaluation batch and finished by ``er-grid resume``. Returns both experiment folders."""
    import yaml

    spec_file = tmp / "spec.yaml"
    spec_file.write_text(yaml.safe_dump(spec))
    straight = run_cli(head, "run", str(spec_file), "--storage", str(tmp / "straight"))
    assert straight.returncode == 0, straight.stdout[-3000:] + straight.stderr[-3000:]
    killed = run_cli(head, "run", str(spec_file), "--storage", str(tmp / "killed"), ER_GRID_TEST_KILL_AFTER_BATCHES="1")
    assert killed.returncode == 1, killed.stdout[-3000:] + killed.stderr[-3000:]
    resumed = run_cli(head, "resume", str(tmp / "killed" / spec["experiment"]))
    assert resumed.returncode == 0, resumed.stdout[-3000:] + resumed.stderr[-3000:]
    return tmp / "straight" / spec["experiment"], tmp / "killed" / spec["experiment"]
