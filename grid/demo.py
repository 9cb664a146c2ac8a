"""``make demo``: the smoke grid through a real, token-authenticated local Ray head.

Steps: generate an auth token with HOME pointed into a temporary folder (nothing is written
to your real ``~/.ray``), start ``ray start --head --block`` there with
``RAY_AUTH_MODE=token``, 2 CPUs, the dashboard on 127.0.0.1 and free ports; ``ray job
submit`` ``jobs/full_grid.py --preset smoke`` with ``jobs/runtime_env.yaml``; wait for it;
print ``er-grid status`` and ``er-grid query``; stop the head (only the processes it
started). Results stay in ``results/demo/smoke`` (git-ignored); running the demo again
finds that experiment finished and only prints it.

:class:`LocalHead` is also what the grid tests start (tests/grid/ray_helpers.py).

Ports, measured with ``ss -ltnp`` while such a head ran (Ray 2.60, a machine whose reachable
address is 192.0.2.2): the dashboard and job API listen on 127.0.0.1 only, as asked. Every
other port is Ray's own choice: ``ray start`` replaces ``--node-ip-address=127.0.0.1`` by the
reachable address (``services.resolve_ip_for_localhost``), and Ray binds a component to
loopback only when the node address is loopback, so the GCS, the raylet (node manager and
object manager), every worker's gRPC server and the dashboard agent's gRPC server listen on
all interfaces; the dashboard agent's HTTP port, the runtime-env agent and the Ray Client
server on the reachable address (and loopback); the dashboard's and the agent's Prometheus
metrics on 0.0.0.0. Token authentication (``RAY_AUTH_MODE=token``) guards the gRPC and HTTP
APIs; the metrics endpoints are read-only and unauthenticated. Nothing more can be bound to
127.0.0.1 through ``ray start``'s options; on a shared network run the demo behind a host
firewall (or in a network namespace without outside interfaces).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent  # the venv's bin: ray, er-grid, python


# How Ray says a port it was given is taken: the gRPC servers' bind error, and ray start's own
# check of the dashboard port.
PORT_TAKEN = ("address already in use", "already occupied")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def client_env(home: Path, extra: dict | None = None) -> dict:
    """Environment of a Ray client or driver using the token under ``home``."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "ER_GRID_TEST_"))}
    env.update({
        "HOME": str(home),
        "RAY_AUTH_MODE": "token",
        "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        "RAY_USAGE_STATS_ENABLED": "0",
        # Keep torch in every Ray worker and driver to one thread on the 2-core test machine.
        "OMP_NUM_THREADS": "1",
        "PYTHONUNBUFFERED": "1",
    })
    env.update(extra or {})
    return env


@dataclass
class LocalHead:
    """A local Ray head this process started: token auth, 127.0.0.1 dashboard, free ports.

    ``start(tmp)`` writes the token under ``tmp/home`` (HOME redirected), runs ``ray start
    --head --block`` in its own session and waits until the job API answers with the token;
    when Ray reports a chosen port taken meanwhile, it tries again on fresh ports.
    ``stop()`` sends SIGTERM to that ``ray start`` process (its handler stops the node), then
    SIGKILLs whatever is left of the process group it created, and removes Ray's temp dir:
    only processes started here are touched (never ``ray stop``, which stops every Ray
    process on the machine). ``env()`` is the environment of a client or driver: the same
    HOME/token, ``RAY_ADDRESS`` and the venv's ``bin`` first on PATH.
    """

    home: Path
    temp_dir: Path
    gcs_port: int
    dashboard_port: int
    process: subprocess.Popen
    attempts: int = 1  # the try of start() that brought this head up

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.gcs_port}"

    @property
    def dashboard(self) -> str:
        return f"http://127.0.0.1:{self.dashboard_port}"

    def env(self, **extra: str) -> dict:
        return client_env(self.home, {"RAY_ADDRESS": self.address, **extra})

    def job_command(self, job_file: str, preset: str, storage) -> list[str]:
        """``er-grid submit`` (``ray job submit`` uploading the repo as ``jobs/runtime_env.yaml``
        says, plus the checkout's code version: the upload has no ``.git``) of ``job_file`` (a
        path under ``jobs/``) with ``--preset`` to this head; run it with ``cwd=REPO``."""
        return [str(BIN / "er-grid"), "submit", "--address", self.dashboard, "--working-dir", ".", "--",
                "python", job_file, "--preset", preset, "--storage", str(storage)]

    @classmethod
    def start(cls, tmp: Path, num_cpus: int = 2, timeout: float = 90.0, attempts: int = 3,
              port_source: Callable[[], int] = free_port) -> "LocalHead":
        """Start the head; ``attempts`` tries, each on fresh ports from ``port_source``.

        A port is free when chosen but only bound by Ray a moment later, so another process can
        take it in between; ``ray start`` then fails naming a port in use (:data:`PORT_TAKEN`).
        Only that failure is retried; the log of a failed try stays as
        ``ray_head.attempt<n>.log``, and ``attempts`` on the head says which try started it.
        """
        if attempts < 1:
            raise ValueError(f"attempts must be ≥ 1, got {attempts}")
        home = tmp / "home"
        home.mkdir(parents=True, exist_ok=True)
        env = client_env(home)
        subprocess.run([str(BIN / "ray"), "get-auth-token", "--generate"], env=env, check=True,
                       capture_output=True, timeout=60)
        assert (home / ".ray" / "auth_token").is_file(), "token was not written under the temp HOME"
        for attempt in range(1, attempts + 1):
            head = cls._launch(tmp, home, env, num_cpus, port_source, attempt)
            try:
                head._wait_ready(timeout)
                return head
            except Exception:
                taken = head._port_was_taken(tmp / "ray_head.log")
                head.stop()
                if not taken or attempt == attempts:
                    raise
                (tmp / "ray_head.log").replace(tmp / f"ray_head.attempt{attempt}.log")
        raise AssertionError("unreachable: the last attempt returns or raises")

    @classmethod
    def _launch(cls, tmp: Path, home: Path, env: dict, num_cpus: int, port_source: Callable[[], int],
                attempt: int) -> "LocalHead":
        # Ray's unix socket paths must stay short (~107 bytes): a short temp dir of our own.
        temp_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"rg{os.getpid()}_{free_port()}"
        # The dashboard's port is chosen first (the one a test hands out taken): ray start checks
        # it before starting anything, so a taken one fails in seconds, where a taken GCS port
        # fails only when the GCS client gives up (~45 s).
        dashboard_port, gcs_port, *ports = [str(port_source()) for _ in range(9)]
        with open(tmp / "ray_head.log", "w") as log:
            process = subprocess.Popen(
                [str(BIN / "ray"), "start", "--head", "--block", f"--num-cpus={num_cpus}", "--num-gpus=0",
                 f"--port={gcs_port}", "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
                 f"--temp-dir={temp_dir}", "--include-dashboard=true", "--disable-usage-stats",
                 "--node-ip-address=127.0.0.1",
                 f"--node-manager-port={ports[0]}", f"--object-manager-port={ports[1]}",
                 f"--ray-client-server-port={ports[2]}", f"--dashboard-agent-listen-port={ports[3]}",
                 f"--dashboard-agent-grpc-port={ports[4]}", f"--runtime-env-agent-port={ports[5]}",
                 f"--metrics-export-port={ports[6]}"],
                env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=tmp,
            )
        return cls(home, temp_dir, int(gcs_port), int(dashboard_port), process, attempt)

    def _port_was_taken(self, head_log: Path) -> bool:
        """Whether ``ray start``'s output or its session's logs name a port already in use."""
        logs = [head_log, *self.temp_dir.glob("session_*/logs/*.out"), *self.temp_dir.glob("session_*/logs/*.err")]
        for log in logs:
            try:
                text = log.read_text(errors="replace").lower()
            except OSError:
                continue
            if any(phrase in text for phrase in PORT_TAKEN):
                return True
        return False

    def _wait_ready(self, timeout: float) -> None:
        token = (self.home / ".ray" / "auth_token").read_text().strip()
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"ray start exited with {self.process.returncode}; see ray_head.log")
            request = urllib.request.Request(f"{self.dashboard}/api/jobs/",
                                             headers={"Authorization": f"Bearer {token}"})
            try:
                with urllib.request.urlopen(request, timeout=5) as response:
                    json.load(response)
                    return
            except (urllib.error.URLError, ConnectionError, TimeoutError, json.JSONDecodeError) as err:
                last = err
            time.sleep(1.0)
        raise TimeoutError(f"Ray head not ready after {timeout}s: {last}")

    def stop(self) -> None:
        """SIGTERM our ``ray start --block`` (it stops its node), then SIGKILL its process group."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                pass
        try:
            os.killpg(self.process.pid, signal.SIGKILL)  # our own session: start_new_session=True
        except ProcessLookupError:
            pass
        self.process.wait(timeout=10)
        shutil.rmtree(self.temp_dir, ignore_errors=True)



def forget_outdated_demo(experiment: Path) -> None:
    """Remove a previous demo's experiment if the smoke preset has changed since (a changed
    spec is never run into an existing experiment; this folder is the demo's own)."""
    sys.path.insert(0, str(REPO / "jobs"))
    from full_grid import SMOKE

    from grid.common.errors import GridError
    from grid.experiment.spec_record import check_recorded_spec
    from grid.spec import GridSpec

    try:
        check_recorded_spec(GridSpec.from_dict(dict(SMOKE, storage_path=str(experiment.parent))), str(experiment))
    except GridError:
        print(f"the smoke preset changed since the last demo: replacing {experiment}", flush=True)
        shutil.rmtree(experiment)


def main() -> int:
    storage = REPO / "results" / "demo"
    forget_outdated_demo(storage / "smoke")
    tmp = Path(tempfile.mkdtemp(prefix="er-grid-demo-"))
    print(f"starting a local Ray head (token auth, dashboard on 127.0.0.1) in {tmp} ...", flush=True)
    head = LocalHead.start(tmp)
    try:
        print(f"dashboard (local only): {head.dashboard}\nsubmitting jobs/full_grid.py --preset smoke ...", flush=True)
        submit = subprocess.run(head.job_command("jobs/full_grid.py", "smoke", storage), cwd=REPO, env=head.env())
        if submit.returncode != 0:
            print(f"the job failed (exit code {submit.returncode}); Ray's logs: {head.temp_dir}/session_latest/logs",
                  file=sys.stderr)
            return submit.returncode
        experiment = storage / "smoke"
        for args in (["status", str(experiment)], ["query", str(experiment)]):
            print(f"\n$ er-grid {' '.join(args)}", flush=True)
            subprocess.run([str(BIN / "er-grid"), *args], cwd=REPO, env=head.env(), check=True)
        print(f"\nresults: {experiment}/results  (er-grid report {experiment})")
        return 0
    finally:
        head.stop()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
