"""A full disk (ENOSPC, errno 28) recognised in every shape it reaches the driver in, and said by
the CLI as one line naming where, exit 2 (``grid.common.disk_full``, ``grid.cli.common.guarded``).

The shapes are the real ones: pyarrow's ``OSError`` (errno 28, no file name) from writing to a
full tmpfs, a trial's error as Ray wraps it (``RayTaskError``, and the ``OSError`` subclass
``as_instanceof_cause`` makes of it), Tune's ``TuneError`` that keeps only the trace's text,
and an ``EOFError`` from a Tune pickle the full disk cut short (nothing of ENOSPC left in it).
The whole run on real Ray is ``tests/grid/scenarios/test_disk_full_scenario.py``.
"""

from __future__ import annotations

import errno
import os
import subprocess

import pyarrow as pa
import pyarrow.fs as pafs
import pytest

from grid.cli.common import EXIT_USAGE, guarded
from grid.common import disk_full as disk_full_module
from grid.common.disk_full import DiskFull, disk_full, naming_full_disk, no_space_error, raise_if_trials_hit_full_disk
from grid.common.errors import GridError
from grid.common.faults import DISK_FULL_AFTER_BATCHES_ENV, disk_full_if_asked


def pyarrow_enospc() -> OSError:
    """What pyarrow raises writing to a full disk, raised by pyarrow itself (``/dev/full``
    answers every write with ENOSPC)."""
    with pytest.raises(OSError) as caught:
        with pafs.LocalFileSystem().open_output_stream("/dev/full") as out:
            out.write(b"x" * (1 << 20))
    return caught.value


@pytest.fixture(scope="module")
def enospc() -> OSError:
    if not os.path.exists("/dev/full"):
        pytest.skip("the operating system, not a feature: no /dev/full here (Linux has it), so pyarrow's own "
                    "ENOSPC cannot be made; the injected ENOSPC tests cover the same path")
    return pyarrow_enospc()


def one_error_line(err: BaseException, capsys) -> str:
    def command() -> int:
        raise err

    assert guarded(command) == EXIT_USAGE
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("er-grid: error: "), lines
    return lines[0]


def test_pyarrows_enospc_names_no_file_and_is_recognised(enospc, capsys):
    assert enospc.errno == errno.ENOSPC and not enospc.filename  # why the driver must name the place
    assert no_space_error(enospc) is enospc
    line = one_error_line(enospc, capsys)
    assert line == "er-grid: error: No space left on device (disk full); free space and run the command again"


def test_a_trial_error_wrapped_by_ray_and_tune_is_recognised(enospc, tmp_path, capsys):
    from ray.exceptions import RayTaskError
    from ray.tune.error import TuneError

    trace = f"Traceback (most recent call last):\n  ...\nOSError: {enospc}"
    wrapped = RayTaskError("ImplicitFunc.train", trace, enospc)
    as_cause = wrapped.as_instanceof_cause()  # what Tune's results hold: an OSError subclass
    text_only = TuneError(f"Failure # 1 (occurred at 2026-12-08_02-04-43)\n{trace}")  # error.txt, error.pkl lost
    for err in (wrapped, as_cause, text_only):
        assert no_space_error(err) is not None, type(err)
        full = disk_full(err, str(tmp_path))
        assert isinstance(full, DiskFull) and full.where == str(tmp_path)
        assert f"er-grid resume {tmp_path}" in str(full)
    assert "No space left on device (disk full)" in one_error_line(text_only, capsys)  # not an OSError: the last clause


def test_the_os_error_of_a_named_file_names_that_file(capsys):
    err = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/run/results/x.parquet")
    line = one_error_line(err, capsys)
    assert "(disk full) at /data/run/results/x.parquet" in line


def test_other_errors_are_not_a_full_disk(tmp_path):
    for err in (OSError(errno.EACCES, "Permission denied"), EOFError("Ran out of input"), ValueError("bad")):
        assert no_space_error(err) is None
        assert disk_full(err, str(tmp_path)) is None  # tmp_path's disk has room
    with pytest.raises(EOFError):
        with naming_full_disk(str(tmp_path)):
            raise EOFError("Ran out of input")


def test_a_cut_short_tune_pickle_on_a_full_disk_is_the_full_disk(tmp_path, monkeypatch):
    """Tune reading back its own pickle that the full disk cut short fails with no trace of
    ENOSPC; it is the disk's doing when the experiment's disk has no room. A disk counts as
    full below a threshold, set here above any disk's size."""
    monkeypatch.setattr(disk_full_module, "FULL_BELOW_BYTES", 1 << 62)
    with pytest.raises(DiskFull) as caught:
        with naming_full_disk(str(tmp_path / "experiment")):
            raise EOFError("Ran out of input")
    assert caught.value.experiment == str(tmp_path / "experiment")
    assert isinstance(caught.value.__cause__, EOFError)
    # A user error stays what it is, full disk or not.
    with pytest.raises(GridError, match="different spec"):
        with naming_full_disk(str(tmp_path)):
            raise GridError("run with a different spec")


def test_trials_that_hit_a_full_disk_stop_the_run(enospc, tmp_path):
    class Result:
        def __init__(self, error):
            self.error = error

    raise_if_trials_hit_full_disk([Result(None), Result(RuntimeError("CUDA out of memory"))], str(tmp_path))
    with pytest.raises(DiskFull, match="er-grid resume"):
        raise_if_trials_hit_full_disk([Result(None), Result(enospc)], str(tmp_path))


def test_the_test_hook_raises_what_pyarrow_raises(enospc, monkeypatch):
    monkeypatch.setenv(DISK_FULL_AFTER_BATCHES_ENV, "2")
    disk_full_if_asked(DISK_FULL_AFTER_BATCHES_ENV, 2)
    with pytest.raises(OSError) as caught:
        disk_full_if_asked(DISK_FULL_AFTER_BATCHES_ENV, 3)
    assert caught.value.errno == enospc.errno and caught.value.filename == enospc.filename
    assert str(enospc).endswith(str(caught.value).split("Detail: ")[-1])


def test_a_real_full_tmpfs_is_named_with_its_free_space(tmp_path, capsys):
    """Where mounting is allowed (root): a 64 KiB tmpfs filled by pyarrow, the error said as one
    line naming the folder and the bytes free there."""
    mount = tmp_path / "small"
    mount.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)],
                                           capture_output=True).returncode != 0:
        pytest.skip("a permission, not a feature: mounting a tmpfs needs root; the injected ENOSPC "
                    "tests cover the same path")
    try:
        experiment = str(mount / "experiment")
        with pytest.raises(DiskFull) as caught:
            with naming_full_disk(experiment):
                with pafs.LocalFileSystem().open_output_stream(str(mount / "filler")) as out:
                    out.write(pa.py_buffer(b"x" * (1 << 20)))
        assert caught.value.where == experiment
        assert "(0 bytes free there)" in str(caught.value)
    finally:
        subprocess.run(["umount", str(mount)], check=True)
