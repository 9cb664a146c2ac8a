"""One driver per experiment: the lease ``er-grid run`` and ``er-grid resume`` hold while they
drive an experiment's trials (``status``, ``query`` and ``report`` never take it).

**Where.** ``<storage>/<experiment>.driver.lease``, beside the experiment folder (a folder
without ``grid_spec.json`` that holds anything is not er-grid's, and the lease comes before that
record). One JSON :class:`DriverRecord`: host, boot id, pid and its start time, since, heartbeat.

**Local storage: a kernel lock.** The driver holds an ``flock`` on the lease file while it
drives; the kernel drops it when the process ends, ``kill -9`` included. So a dead driver's
lease is free at once, a reused pid cannot fake a live one, and of drivers starting or taking
over at once exactly one gets it. Release unlinks the file while still locked; a driver that
locked the unlinked inode sees it differ from the path and tries again. (Linux NFS maps
``flock`` to byte-range locks; a filesystem without locks gets the lease below.)

**Object stores: a lease with expiry.** pyarrow has no conditional PUT: a missing or stale lease
is written whole and read back after ``SETTLE_SECONDS``; only a driver that still finds its own
token holds it (takers that both saw it free write within milliseconds of each other, so both
read back the later write). A daemon thread rewrites ``heartbeat`` every ``HEARTBEAT_SECONDS``
while the token is its own. A holder on this host (hostname and boot id) is stale once its pid
is gone, a zombie or reused (another start time); on another host, once its heartbeat is older
than ``EXPIRY_SECONDS`` (host clocks assumed within seconds). An unreadable record is live until
the file is that old.

**Scope.** ``run`` and ``resume`` are decorated with :func:`releases_driver_leases` and call
:func:`take_driver_lease` once their input is checked, before any trial starts; it is released
(removed while still this driver's) when the call returns or raises. Re-entrant per process:
``run`` of an existing experiment calls ``resume``, which shares it. A second driver gets one
:class:`~grid.common.errors.GridError` naming the holder (exit 2 from the CLI).
"""

from __future__ import annotations

import contextlib
import contextvars
import errno
import functools
import json
import os
import socket
import sys
import threading
import time
import uuid
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timezone
from typing import Optional

from grid.common.bounded_json import bounded_json, read_at_most
from grid.common.errors import GridError
from grid.common.locations import filesystem

#: The lease of experiment folder ``F`` is the file ``F`` + this suffix, beside the folder.
LEASE_SUFFIX = ".driver.lease"
#: Object stores: how often a holder rewrites its heartbeat.
HEARTBEAT_SECONDS = 10.0
#: Object stores: a holder on another host whose heartbeat is older than this is stale.
EXPIRY_SECONDS = 3 * HEARTBEAT_SECONDS
#: Object stores: from writing a lease to reading it back; longer than any taker's read-to-write gap.
SETTLE_SECONDS = 2.0
MAX_RECORD_BYTES = 4096  # a record is a few hundred bytes
NO_LOCKS = frozenset({errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL})  # flock: "no locks here"


@dataclass(frozen=True)
class DriverRecord:
    """Who drives the experiment: what the lease file holds."""

    host: str
    boot: str  # the host's boot id, telling hosts of one name (and reboots) apart; "" where none
    pid: int
    started: str  # the pid's start time in clock ticks since boot; "" where unknown
    since: str  # UTC, ISO 8601
    heartbeat: float  # seconds since the epoch; rewritten on object stores
    token: str  # random, one per acquisition

    def to_bytes(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @classmethod
    def from_bytes(cls, data: bytes, where: str) -> "DriverRecord":
        """The record in ``data``; GridError if it is not one er-grid wrote."""
        value = bounded_json(data, f"lease {where}", MAX_RECORD_BYTES)
        kinds = {name: {"pid": int, "heartbeat": float}.get(name, str) for name in cls.__dataclass_fields__}
        if not (isinstance(value, dict) and value.keys() == kinds.keys()
                and all(type(value[name]) is kind for name, kind in kinds.items()) and 0 < value["pid"] < 2**31):
            raise GridError(f"lease {where} is damaged (not a driver record)")
        return cls(**value)


def this_driver() -> DriverRecord:
    return DriverRecord(host=socket.gethostname(), boot=boot_id(), pid=os.getpid(),
                        started=process_state(os.getpid())[1] or "", token=uuid.uuid4().hex,
                        since=datetime.now(timezone.utc).isoformat(timespec="seconds"), heartbeat=time.time())


def boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id") as stream:
            return stream.read().strip()
    except OSError:
        return ""


def process_state(pid: int) -> tuple[Optional[str], Optional[str]]:
    """(state letter, start time in clock ticks since boot) of ``pid`` from ``/proc``; (None,
    None) where it cannot be read (no such process, or no /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stream:
            after_name = stream.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None, None
    return after_name[0], after_name[19]  # fields 3 and 22 of proc(5), counted after "(comm)"


def process_alive(pid: int, started: str) -> bool:
    """Whether ``pid`` on this host is still the process that wrote a record: not gone, not a
    zombie, not a reused pid with another start time."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, another user's
    state, now_started = process_state(pid)
    if state is None:
        return not os.path.isdir("/proc")  # gone meanwhile; without /proc, kill(0) is all there is
    return state not in ("Z", "X") and (not started or now_started == started)


def on_this_host(record: DriverRecord) -> bool:
    mine = boot_id()
    return record.host == socket.gethostname() and (not record.boot or not mine or record.boot == mine)


def lease_location(experiment: str) -> tuple[object, str, str]:
    """(pyarrow filesystem, lease path on it, the lease as a user writes it) of an experiment
    folder, a local path or a URI."""
    fs, folder = filesystem(experiment)
    shown = experiment.partition("?")[0] if "://" in experiment else folder
    return fs, folder.rstrip("/") + LEASE_SUFFIX, shown.rstrip("/") + LEASE_SUFFIX


def read_record(data: bytes, where: str) -> Optional[DriverRecord]:
    """The record in ``data``; None for an empty or damaged one."""
    try:
        return DriverRecord.from_bytes(data, where) if data else None
    except GridError:
        return None


class LeaseHeld(Exception):
    """A backend's answer when another driver holds the lease; ``args[0]``: its record or None."""


class LockedFile:
    """The lease on a local filesystem: an exclusive ``flock`` on the lease file."""

    takeover = "its lease is free as soon as it exits"

    def __init__(self, path: str):
        self.path, self.fd, self.made_folder = path, None, False

    def acquire(self, record: DriverRecord) -> Optional[DriverRecord]:
        """Lock and write ``record``; the record a dead driver left, if any. LeaseHeld when
        another process holds the lock; OSError where the filesystem has no locks."""
        import fcntl

        folder = os.path.dirname(self.path)
        self.made_folder = not os.path.isdir(folder)  # removed again on release if left empty
        os.makedirs(folder, exist_ok=True)
        for _attempt in range(100):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)  # not inherited
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BaseException as err:
                os.close(fd)
                raise LeaseHeld(self.read_holder()) if isinstance(err, BlockingIOError) else err
            if same_file(fd, self.path):
                break
            os.close(fd)  # its holder released (unlinked) the inode locked here: lock the new one
        else:
            raise GridError(f"lease {self.path} keeps being replaced while it is taken")
        left = read_record(os.pread(fd, MAX_RECORD_BYTES + 1, 0), self.path)
        os.ftruncate(fd, 0)
        os.pwrite(fd, record.to_bytes(), 0)
        os.fsync(fd)
        self.fd = fd
        return left

    def read_holder(self) -> Optional[DriverRecord]:
        for _attempt in range(20):  # the holder writes its record right after locking
            with contextlib.suppress(FileNotFoundError), open(self.path, "rb") as stream:
                if (record := read_record(read_at_most(stream, MAX_RECORD_BYTES), self.path)) is not None:
                    return record
            time.sleep(0.05)
        return None

    def release(self, record: DriverRecord) -> None:
        try:
            if same_file(self.fd, self.path):
                os.unlink(self.path)  # while still locked: see the module docstring
        finally:
            os.close(self.fd)
            self.fd = None
        if self.made_folder:
            with contextlib.suppress(OSError):  # not empty: the run's experiment is there
                os.rmdir(os.path.dirname(self.path))


def same_file(fd: int, path: str) -> bool:
    try:
        here, there = os.fstat(fd), os.stat(path, follow_symlinks=False)
    except FileNotFoundError:
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


class StoreLease:
    """The lease on an object store (or any pyarrow filesystem): written, settled, read back,
    kept alive by a heartbeat thread."""

    def __init__(self, fs, path: str, heartbeat: float = HEARTBEAT_SECONDS, expiry: float = EXPIRY_SECONDS,
                 settle: float = SETTLE_SECONDS):
        self.fs, self.path, self.heartbeat, self.expiry, self.settle = fs, path, heartbeat, expiry, settle
        self.takeover = f"its lease is taken over once its pid is gone, or its heartbeat {expiry:g} s old"
        self.stop, self.beating = threading.Event(), None

    def acquire(self, record: DriverRecord) -> Optional[DriverRecord]:
        for _attempt in range(5):
            holder, age = self.read()
            if age is not None and not self.is_stale(holder, age):
                raise LeaseHeld(holder)
            self.write(record)
            time.sleep(self.settle)
            if self.read()[0] == record:
                self.beating = threading.Thread(target=self.beat, args=(record,), daemon=True,
                                                name=f"heartbeat of {self.path}")
                self.beating.start()
                return holder
            # Another taker wrote after this one: judged again on the next turn (live, normally).
        raise GridError(f"lease {self.path} keeps being taken by other drivers; try again")

    def read(self) -> tuple[Optional[DriverRecord], Optional[float]]:
        """(its record, None where unreadable; seconds since its heartbeat, or since the file
        was written); (None, None) when there is no lease."""
        import pyarrow.fs as pafs

        info = self.fs.get_file_info(self.path)
        if info.type == pafs.FileType.NotFound:
            return None, None
        try:
            with self.fs.open_input_stream(self.path) as stream:
                data = read_at_most(stream, MAX_RECORD_BYTES)
        except FileNotFoundError:
            return None, None
        if not data:  # what a failed flock left (this lease writes whole records)
            return None, None
        record = read_record(data, self.path)
        written = record.heartbeat if record is not None else info.mtime.timestamp() if info.mtime else 0.0
        return record, time.time() - written

    def is_stale(self, holder: Optional[DriverRecord], age: float) -> bool:
        if holder is not None and on_this_host(holder):
            return not process_alive(holder.pid, holder.started)
        return age > self.expiry

    def write(self, record: DriverRecord) -> None:
        # On a local disk (the fallback) whole or not at all: a temporary file renamed into place;
        # an object store's PUT replaces the object whole.
        target = f"{self.path}.{record.token}.tmp" if self.fs.type_name == "local" else self.path
        try:
            stream = self.fs.open_output_stream(target)
        except FileNotFoundError:  # a filesystem with real folders, the storage folder not made yet
            self.fs.create_dir(self.path.rsplit("/", 1)[0], recursive=True)
            stream = self.fs.open_output_stream(target)
        with stream:
            stream.write(record.to_bytes())
        if target != self.path:
            self.fs.move(target, self.path)

    def beat(self, record: DriverRecord) -> None:
        while not self.stop.wait(self.heartbeat):
            try:
                holder, _age = self.read()
                if holder is None or holder.token != record.token:
                    who = f"pid {holder.pid} on host {holder.host}" if holder else "another driver"
                    print(f"er-grid: warning: lease {self.path} was taken over by {who}; this driver "
                          "no longer holds it", file=sys.stderr)
                    return
                self.write(replace(record, heartbeat=time.time()))
            except OSError as err:  # a storage hiccup: the next beat tries again
                print(f"er-grid: warning: lease heartbeat failed ({err})", file=sys.stderr)

    def release(self, record: DriverRecord) -> None:
        self.stop.set()
        if self.beating is not None:
            self.beating.join()
        if getattr(self.read()[0], "token", None) == record.token:
            self.fs.delete_file(self.path)


class DriverLease:
    """This process's lease on one experiment folder (a local path or a URI): ``acquire`` /
    ``release``, or a ``with`` block; not re-entrant by itself (:func:`take_driver_lease` is).
    ``store_options`` (heartbeat, expiry, settle) choose the object-store lease on any filesystem."""

    def __init__(self, experiment: str, **store_options):
        fs, self.path, self.shown = lease_location(experiment)
        self.experiment, self.key = experiment, f"{fs.type_name}:{self.path}"
        local = fs.type_name == "local" and not store_options
        self.backend = LockedFile(self.path) if local else StoreLease(fs, self.path, **store_options)
        self.record: Optional[DriverRecord] = None
        self.took_over: Optional[DriverRecord] = None  # the record a dead driver left

    def acquire(self) -> "DriverLease":
        record = this_driver()
        try:
            try:
                left = self.backend.acquire(record)
            except OSError as err:
                if not isinstance(self.backend, LockedFile) or err.errno not in NO_LOCKS:
                    raise
                self.backend = StoreLease(filesystem(self.path)[0], self.path)  # no locks here: expiry
                left = self.backend.acquire(record)
        except LeaseHeld as held:
            holder = held.args[0]
            who = (f"pid {holder.pid} on host {holder.host} since {holder.since}" if holder is not None
                   else "another driver (its record could not be read)")
            raise GridError(f"experiment {self.experiment} is being driven by {who} (lease {self.shown}); "
                            f"wait for it to end, or stop that driver: {self.backend.takeover}") from None
        self.record, self.took_over = record, left
        if left is not None:
            print(f"er-grid: note: took over the lease of experiment {self.experiment} from pid {left.pid} "
                  f"on host {left.host} (driving since {left.since}), which ended without releasing it",
                  file=sys.stderr)
        return self

    def release(self) -> None:
        if self.record is not None:
            record, self.record = self.record, None
            self.backend.release(record)

    def __enter__(self) -> "DriverLease":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


# This process's leases, re-entrant: lease key → [DriverLease, number of holders].
HELD: dict[str, list] = {}
HELD_LOCK = threading.Lock()
# The leases taken inside the innermost call decorated with releases_driver_leases.
TAKEN: contextvars.ContextVar[Optional[list]] = contextvars.ContextVar("er_grid_driver_leases", default=None)


def take_driver_lease(experiment: str) -> DriverLease:
    """Take the lease of the experiment folder ``experiment`` (or share it, when this process
    holds it already) until the enclosing :func:`releases_driver_leases` call ends; GridError
    naming the holder when another driver has it."""
    taken = TAKEN.get()
    if taken is None:
        raise RuntimeError("take_driver_lease outside a function decorated with releases_driver_leases")
    lease = DriverLease(experiment)
    with HELD_LOCK:
        if lease.key not in HELD:
            HELD[lease.key] = [lease.acquire(), 0]
        HELD[lease.key][1] += 1
        lease = HELD[lease.key][0]
    taken.append(lease)
    return lease


def releases_driver_leases(function):
    """Decorator: the leases ``function`` takes with :func:`take_driver_lease` are given back
    when it returns or raises (released once no enclosing call of this process holds them)."""

    @functools.wraps(function)
    def call(*args, **kwargs):
        taken: list = []
        context = TAKEN.set(taken)
        try:
            return function(*args, **kwargs)
        finally:
            TAKEN.reset(context)
            for lease in reversed(taken):
                with HELD_LOCK:
                    HELD[lease.key][1] -= 1
                    last = HELD[lease.key][1] == 0
                    if last:
                        del HELD[lease.key]
                if last:
                    lease.release()

    return call


__all__ = ["EXPIRY_SECONDS", "HEARTBEAT_SECONDS", "LEASE_SUFFIX", "SETTLE_SECONDS", "DriverLease", "DriverRecord",
           "lease_location", "releases_driver_leases", "take_driver_lease"]
