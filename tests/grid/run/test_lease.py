"""One driver per experiment (``grid.run.lease``), without Ray: the kernel lock on local storage
and the lease with expiry on object stores (pyarrow's in-memory filesystem, a local one, and a
real S3 endpoint served by moto).

Holders in other processes are real processes: a lease taken by a child Python, and a child
killed with SIGKILL while holding it. Records of drivers on other hosts are written as such a
driver writes them (another hostname, a heartbeat of the given age)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import replace

import pyarrow.fs as pafs
import pytest

from grid.common.errors import GridError
from grid.run.lease import (LEASE_SUFFIX, DriverLease, DriverRecord, LeaseHeld, StoreLease, process_state,
                            releases_driver_leases, take_driver_lease, this_driver)

# A lease held by another process until its stdin closes (or it is killed).
HOLDER = """
import sys
from grid.run.lease import DriverLease
lease = DriverLease(sys.argv[1]).acquire()
print("held", flush=True)
sys.stdin.read()
lease.release()
"""

FAST = {"heartbeat": 0.2, "expiry": 5.0, "settle": 0.3}  # object-store timings for the tests


def start_holder(experiment) -> subprocess.Popen:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER, str(experiment)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline() == "held\n"
    return holder


def elsewhere(age: float, pid: int = 4242) -> DriverRecord:
    """The record of a driver on another host whose last heartbeat is ``age`` seconds old."""
    return DriverRecord(host="another-host.example", boot="another-boot", pid=pid, started="17",
                        since="2026-01-01T00:00:00+00:00", heartbeat=time.time() - age, token="b" * 32)


def eventually(condition, timeout: float = 20.0) -> bool:
    """Whether ``condition()`` comes true within ``timeout`` seconds (a loaded machine is slow)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def read_lease(fs, path: str) -> DriverRecord:
    with fs.open_input_stream(path) as stream:
        return DriverRecord.from_bytes(stream.read(), path)


def write_lease(fs, path: str, data: bytes) -> None:
    with fs.open_output_stream(path) as stream:
        stream.write(data)


def test_a_second_driver_is_refused_naming_the_holder_until_it_ends(tmp_path):
    experiment = tmp_path / "exp"
    holder = start_holder(experiment)
    try:
        with pytest.raises(GridError) as refused:
            DriverLease(str(experiment)).acquire()
        message = str(refused.value)
        assert f"experiment {experiment} is being driven by pid {holder.pid} on host {socket.gethostname()} since " \
               in message
        assert f"(lease {experiment}{LEASE_SUFFIX})" in message and "\n" not in message
        assert json.loads((tmp_path / f"exp{LEASE_SUFFIX}").read_text())["pid"] == holder.pid
    finally:
        holder.stdin.close()
        assert holder.wait(timeout=30) == 0
    assert not (tmp_path / f"exp{LEASE_SUFFIX}").exists(), "a released lease stays behind"
    assert list(tmp_path.iterdir()) == [], "the lease made a folder it left behind"
    with DriverLease(str(experiment)) as lease:
        assert lease.took_over is None  # released properly: nothing to take over


def test_a_lease_left_by_a_killed_driver_is_taken_over_at_once(tmp_path, capsys):
    experiment = tmp_path / "exp"
    holder = start_holder(experiment)
    holder.kill()
    holder.wait(timeout=30)
    assert (tmp_path / f"exp{LEASE_SUFFIX}").exists()  # left behind, still naming the dead driver
    started = time.monotonic()
    with DriverLease(str(experiment)) as lease:
        assert time.monotonic() - started < 1.0
        assert lease.took_over.pid == holder.pid
        assert json.loads((tmp_path / f"exp{LEASE_SUFFIX}").read_text())["token"] == lease.record.token
    assert f"took over the lease of experiment {experiment} from pid {holder.pid}" in capsys.readouterr().err
    assert not (tmp_path / f"exp{LEASE_SUFFIX}").exists()


def test_racing_takers_of_a_dead_drivers_lease_exactly_one_wins(tmp_path):
    experiment = tmp_path / "exp"
    holder = start_holder(experiment)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=30)
    outcomes, barrier = [], threading.Barrier(6)

    def take():
        barrier.wait()
        try:
            outcomes.append(DriverLease(str(experiment)).acquire())  # held to the end of the test
        except GridError as err:
            outcomes.append(str(err))

    threads = [threading.Thread(target=take) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes if isinstance(o, DriverLease)]
    assert len(winners) == 1, outcomes
    assert all("is being driven by pid" in o for o in outcomes if isinstance(o, str))
    winners[0].release()


def test_a_taker_that_locks_a_just_released_file_tries_again(tmp_path, monkeypatch):
    """The worst interleaving, forced: the holder releases (unlinks) the file between a taker's
    open and its flock, and a third driver makes and locks a new file at once. The taker then
    holds a lock on an unlinked inode, must see that, and finds the third driver's lease."""
    experiment, third, real_open = str(tmp_path / "exp"), [], os.open
    holder = DriverLease(experiment).acquire()

    def open_then_release(*args, **kwargs):
        fd = real_open(*args, **kwargs)
        if holder.record is not None and str(args[0]).endswith(LEASE_SUFFIX):
            holder.release()
            third.append(DriverLease(experiment).acquire())
        return fd

    monkeypatch.setattr(os, "open", open_then_release)
    with pytest.raises(GridError, match=f"is being driven by pid {os.getpid()}"):
        DriverLease(experiment).acquire()
    monkeypatch.undo()
    assert json.loads((tmp_path / f"exp{LEASE_SUFFIX}").read_text())["token"] == third[0].record.token
    third[0].release()


def test_release_removes_only_its_own_lease(tmp_path):
    experiment, lease_file = str(tmp_path / "exp"), tmp_path / f"exp{LEASE_SUFFIX}"
    first = DriverLease(experiment).acquire()
    lease_file.unlink()  # removed by hand: the next driver makes and locks a new file
    second = DriverLease(experiment).acquire()
    first.release()
    assert json.loads(lease_file.read_text())["token"] == second.record.token
    second.release()
    assert not lease_file.exists()


def test_reentrant_within_one_process_and_released_by_the_outermost_call(tmp_path):
    experiment, lease_file = str(tmp_path / "exp"), tmp_path / f"exp{LEASE_SUFFIX}"

    @releases_driver_leases
    def resume_like():
        return take_driver_lease(experiment)

    @releases_driver_leases
    def run_like():
        outer = take_driver_lease(experiment)
        inner = resume_like()  # a run that resumes: the same lease, not a deadlock or a refusal
        assert inner is outer and lease_file.exists()
        with pytest.raises(GridError, match="is being driven by"):
            DriverLease(experiment).acquire()  # still held for the rest of the outer call
        return outer.record.token

    token = run_like()
    assert len(token) == 32 and not lease_file.exists()
    with pytest.raises(RuntimeError, match="outside a function decorated"):
        take_driver_lease(experiment)


@releases_driver_leases
def refuse_after_taking(experiment: str):
    take_driver_lease(experiment)
    raise GridError("bad input found after the lease was taken")


def test_a_call_that_raises_releases_its_lease(tmp_path):
    with pytest.raises(GridError, match="bad input"):
        refuse_after_taking(str(tmp_path / "exp"))
    assert list(tmp_path.iterdir()) == []
    DriverLease(str(tmp_path / "exp")).acquire().release()


# ---- the object-store lease --------------------------------------------------------------------


def test_store_lease_refuses_a_live_holder_and_takes_over_an_expired_one():
    fs, path = pafs._MockFileSystem(), "bucket/grid/exp" + LEASE_SUFFIX
    fs.create_dir("bucket/grid")
    write_lease(fs, path, elsewhere(age=1.0).to_bytes())
    store = StoreLease(fs, path, **FAST)
    with pytest.raises(LeaseHeld) as held:
        store.acquire(this_driver())
    assert (held.value.args[0].host, held.value.args[0].pid) == ("another-host.example", 4242)

    write_lease(fs, path, elsewhere(age=FAST["expiry"] + 1).to_bytes())
    mine = this_driver()
    assert store.acquire(mine).host == "another-host.example"  # the expired holder it replaced
    assert eventually(lambda: read_lease(fs, path).heartbeat > mine.heartbeat), "no heartbeat"
    assert read_lease(fs, path).token == mine.token
    store.release(mine)
    assert fs.get_file_info(path).type == pafs.FileType.NotFound


def test_store_lease_of_a_dead_or_reused_pid_on_this_host_is_stale_at_once():
    fs, path = pafs._MockFileSystem(), "bucket/exp" + LEASE_SUFFIX
    fs.create_dir("bucket")
    me = this_driver()
    exited = subprocess.Popen([sys.executable, "-c", "pass"])
    exited.wait()
    zombie = subprocess.Popen([sys.executable, "-c", "pass"])  # never waited for until the end
    assert eventually(lambda: process_state(zombie.pid)[0] == "Z")
    slow = dict(FAST, expiry=3600.0)  # far from expiring: only the pid check can free these
    try:
        for left in (replace(me, pid=exited.pid, token="d" * 32), replace(me, pid=zombie.pid, token="z" * 32),
                     replace(me, started="1", token="r" * 32)):  # this pid, another start: reused
            write_lease(fs, path, left.to_bytes())
            store, taker = StoreLease(fs, path, **slow), this_driver()
            assert store.acquire(taker) == left
            store.release(taker)
        write_lease(fs, path, me.to_bytes())  # this very process, alive: never stale
        with pytest.raises(LeaseHeld) as held:
            StoreLease(fs, path, **slow).acquire(this_driver())
        assert held.value.args[0] == me
    finally:
        zombie.wait()


class JudgeAllThenWrite(StoreLease):
    """The worst interleaving for takers, forced: every racer has read and judged the lease
    before any of them writes it (each first write waits for all)."""

    def __init__(self, *args, everyone: threading.Barrier, **kwargs):
        super().__init__(*args, **kwargs)
        self.everyone = everyone

    def write(self, record):
        if self.everyone is not None:
            self.everyone, everyone = None, self.everyone
            everyone.wait(timeout=30)
        super().write(record)


def test_store_lease_racing_takers_exactly_one_wins_and_release_keeps_a_successors(capsys):
    fs, path = pafs._MockFileSystem(), "bucket/exp" + LEASE_SUFFIX
    fs.create_dir("bucket")
    write_lease(fs, path, elsewhere(age=FAST["expiry"] + 1).to_bytes())
    outcomes, everyone, racers = {}, threading.Barrier(4), set()

    def take(index):
        store, record = JudgeAllThenWrite(fs, path, everyone=everyone, **FAST), this_driver()
        racers.add(record.token)
        try:
            store.acquire(record)
            outcomes[index] = (store, record)
        except LeaseHeld as held:
            outcomes[index] = held

    threads = [threading.Thread(target=take, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    winners = [o for o in outcomes.values() if isinstance(o, tuple)]
    assert len(winners) == 1, outcomes
    store, record = winners[0]
    # A loser names a racer that held the lease when it looked (the winner, or one about to lose).
    assert all(o.args[0].token in racers for o in outcomes.values() if not isinstance(o, tuple))
    assert read_lease(fs, path).token == record.token

    # Taken over meanwhile (this driver was judged expired elsewhere): its release leaves the
    # successor's lease alone, and its heartbeat stops writing.
    successor = elsewhere(age=0.0, pid=777)
    write_lease(fs, path, successor.to_bytes())
    warned = []
    assert eventually(lambda: warned.append(capsys.readouterr().err) or "taken over by pid 777" in "".join(warned))
    store.release(record)
    assert read_lease(fs, path) == successor


def test_an_unreadable_lease_counts_as_live_until_it_is_older_than_the_expiry(tmp_path):
    lease_file = tmp_path / f"exp{LEASE_SUFFIX}"
    lease_file.write_bytes(b'{"pid": "not a record"')
    with pytest.raises(GridError, match="another driver \\(its record could not be read\\)"):
        DriverLease(str(tmp_path / "exp"), **FAST).acquire()
    old = time.time() - FAST["expiry"] - 1
    os.utime(lease_file, (old, old))
    lease = DriverLease(str(tmp_path / "exp"), **FAST).acquire()
    assert json.loads(lease_file.read_text())["token"] == lease.record.token
    lease.release()
    assert list(tmp_path.iterdir()) == []


def test_a_filesystem_without_locks_gets_the_lease_with_expiry(tmp_path, monkeypatch):
    import errno
    import fcntl

    def no_locks(fd, operation):
        raise OSError(errno.ENOLCK, "No locks available")

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with DriverLease(str(tmp_path / "exp")) as lease:
        with pytest.raises(GridError, match="its lease is taken over once its pid is gone, or its heartbeat 30 s old"):
            DriverLease(str(tmp_path / "exp")).acquire()
        assert json.loads((tmp_path / f"exp{LEASE_SUFFIX}").read_text())["token"] == lease.record.token
    assert list(tmp_path.iterdir()) == []


def test_on_s3_a_second_driver_is_refused_and_the_lease_removed_on_release(s3_endpoint):
    endpoint, bucket = s3_endpoint
    host = endpoint.split("://", 1)[1]
    experiment = f"s3://{bucket}/leases/exp?endpoint_override={host}&scheme=http"
    with DriverLease(experiment, **FAST) as lease:
        with pytest.raises(GridError) as refused:
            DriverLease(experiment, **FAST).acquire()
        assert f"(lease s3://{bucket}/leases/exp{LEASE_SUFFIX})" in str(refused.value)
        assert f"by pid {os.getpid()} on host {socket.gethostname()}" in str(refused.value)
        fs, _ = pafs.FileSystem.from_uri(experiment)
        with fs.open_input_stream(f"{bucket}/leases/exp{LEASE_SUFFIX}") as stream:
            assert json.loads(stream.read())["token"] == lease.record.token
    assert fs.get_file_info(f"{bucket}/leases/exp{LEASE_SUFFIX}").type == pafs.FileType.NotFound
