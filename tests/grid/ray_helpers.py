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


def compare_stores_tool():
    """``tools/compare_stores.py`` (a script, not a package) as a module: its ``compare`` and ``main``."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("compare_stores", REPO / "tools" / "compare_stores.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def kill_once_stored(process: subprocess.Popen, stored, at_least: int = 2, timeout: float = 180) -> None:
    """SIGKILL ``process`` (a driver) once ``stored()`` counts ``at_least`` committed evaluation
    batches; fails if it ends first or nothing is stored within ``timeout`` seconds."""
    import os
    import signal
    import time

    deadline = time.monotonic() + timeout
    while stored() < at_least:
        assert process.poll() is None, "the run finished before it could be killed"
        assert time.monotonic() < deadline, "no evaluation batch stored in time"
        time.sleep(0.2)
    os.kill(process.pid, signal.SIGKILL)


# -- a second raylet on this machine: the multi-node scenario (scenarios/test_multinode.py) --


def _stat_fields(pid) -> list[str]:
    """``/proc/<pid>/stat`` after the command name (which may hold spaces and ')'), so field
    N of proc(5) is index N - 3: the parent PID is [1], the start time [19]."""
    from pathlib import Path

    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def process_tree(pid: int) -> dict[int, str]:
    """``pid`` and every process descended from it, each with its start time (read from
    ``/proc``; no psutil here), so that a PID reused later by someone else is never signalled."""
    from pathlib import Path

    children: dict[int, list[int]] = {}
    started: dict[int, str] = {}
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            fields = _stat_fields(entry.name)
        except OSError:  # exited while we looked
            continue
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        started[int(entry.name)] = fields[19]
    tree, todo = {}, [pid]
    while todo:
        current = todo.pop()
        if current in started:
            tree[current] = started[current]
            todo.extend(children.get(current, []))
    return tree


def kill_tree(tree: dict[int, str]) -> None:
    """SIGKILL each process of a :func:`process_tree` that is still the same process."""
    import os
    import signal

    for pid, started in tree.items():
        try:
            if _stat_fields(pid)[19] == started:
                os.kill(pid, signal.SIGKILL)
        except (OSError, IndexError):  # gone already
            pass


def cluster_state(head: LocalHead, what: str) -> list[dict]:
    """``what`` (``nodes``, ``actors``) as Ray's state API on the head lists it, dead ones
    included (with the head's token)."""
    import json
    import urllib.request

    token = (head.home / ".ray" / "auth_token").read_text().strip()
    request = urllib.request.Request(f"{head.dashboard}/api/v0/{what}?limit=1000&detail=true",
                                     headers={"Authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.load(response)["data"]["result"]["result"]


class WorkerNode:
    """A worker node joined to ``head`` on this machine: ``ray start --address --block`` in a
    session of its own, on free ports, with its own short temp dir and the head's token.

    The constructor only launches it (several start side by side); ``wait_registered()`` waits
    until the head counts it alive and sets ``node_id``: the node is known by a custom resource
    named after it and the try (a try that failed may still register late), which no trial asks
    for. A ``ray start`` that fails (a port chosen free and taken before Ray bound it, or a
    raylet not registered within Ray's 30 s on a loaded machine) is tried again on fresh ports,
    ``attempts`` tries in all; the log of a failed try stays as ``ray_worker_<name>.attempt<n>.log``
    with its raylet's last lines. ``kill()`` is the node lost at once (a machine gone): SIGKILL
    to the raylet and every process under it. ``stop()`` is the orderly end (SIGTERM to ``ray
    start``, then SIGKILL to what is left of its tree). Both touch only processes this node
    started.
    """

    def __init__(self, head: LocalHead, tmp, name: str, num_cpus: int = 1, attempts: int = 3):
        self.head, self.tmp, self.name, self.num_cpus = head, tmp, name, num_cpus
        self.attempts, self.attempt, self.node_id = attempts, 0, None
        self.log = tmp / f"ray_worker_{name}.log"
        self._launch()

    def _launch(self) -> None:
        import json
        import os
        from pathlib import Path

        self.attempt += 1
        self.resource = f"{self.name}_{self.attempt}"
        # Ray's unix socket paths must stay short (~107 bytes), as for the head.
        self.temp_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rw{os.getpid()}_{free_port()}"
        ports = [str(free_port()) for _ in range(6)]
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(
                [str(BIN / "ray"), "start", f"--address={self.head.address}", "--block",
                 f"--num-cpus={self.num_cpus}", "--num-gpus=0", f"--resources={json.dumps({self.resource: 1})}",
                 "--object-store-memory=100000000", "--node-ip-address=127.0.0.1", f"--temp-dir={self.temp_dir}",
                 "--disable-usage-stats", "--include-log-monitor=false",
                 f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
                 f"--dashboard-agent-listen-port={ports[2]}", f"--dashboard-agent-grpc-port={ports[3]}",
                 f"--runtime-env-agent-port={ports[4]}", f"--metrics-export-port={ports[5]}"],
                env=self.head.env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=self.tmp)

    def wait_registered(self, timeout: float = 120.0) -> str:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                self._retry_or_raise()
            for node in cluster_state(self.head, "nodes"):
                if node["state"] == "ALIVE" and self.resource in node["resources_total"]:
                    self.node_id = node["node_id"]
                    return self.node_id
            time.sleep(0.5)
        raise TimeoutError(f"worker node {self.name} not registered with the head after {timeout}s; see {self.log}")

    def _retry_or_raise(self) -> None:
        """Keep the failed try's log (with its raylet's last lines), stop what is left of it,
        and launch again; after the last try, raise with that log's tail."""
        raylet = "".join(f"\n--- {path.name}:\n{path.read_text(errors='replace')[-1500:]}"
                         for path in self.temp_dir.glob("session_*/logs/raylet.*"))
        kept = self.log.with_name(f"{self.log.stem}.attempt{self.attempt}.log")
        kept.write_text(self.log.read_text(errors="replace") + raylet)
        self.stop()
        if self.attempt >= self.attempts:
            raise RuntimeError(f"ray start of worker node {self.name} failed {self.attempt} times; "
                               f"the last ({kept}):\n{kept.read_text()[-3000:]}")
        self._launch()

    def kill(self) -> list[int]:
        """SIGKILL the whole node at once; returns the PIDs it had."""
        tree = process_tree(self.process.pid)
        kill_tree(tree)
        self.process.wait(timeout=10)
        return sorted(tree)

    def stop(self) -> None:
        import shutil
        import signal

        tree = process_tree(self.process.pid)
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # ray start's handler stops its node
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        kill_tree(tree)  # whatever is left of it (the tree as it was before the SIGTERM)
        self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)
