"""A ``data_root`` on an object store asked once, before any trial starts.

Each trial copies its dataset's folder ``<data_root>/<dataset>/`` to its node
(``grid.trial.data_staging``); a store that cannot be reached, a bucket that does not exist or
a folder that is missing would otherwise fail every trial inside, after the run has started
and written its records. The probe asks for those folders with one attempt and bounded waits
(pyarrow's S3 and GCS clients retry for seconds to minutes by default), so each of those is
one line in seconds. pyarrow is imported when a probe runs, not with ``grid.spec``.
"""

from __future__ import annotations

import datetime
from typing import Iterable

# One attempt, bounded: a store that answers answers in well under these.
CONNECT_SECONDS = 3.0
REQUEST_SECONDS = 10.0


def impatient(fs):
    """``fs`` (from ``FileSystem.from_uri``, with the URI's options) rebuilt to try once and wait
    at most the bounds above; other filesystems are returned as they are."""
    import pyarrow.fs as pafs

    options = fs.__reduce__()[1][0]  # the options pyarrow parsed from the URI, as keyword arguments
    if isinstance(fs, pafs.S3FileSystem):
        return pafs.S3FileSystem(**dict(options, connect_timeout=CONNECT_SECONDS, request_timeout=REQUEST_SECONDS,
                                        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1)))
    if type(fs).__name__ == "GcsFileSystem":
        return type(fs)(**dict(options, retry_time_limit=datetime.timedelta(seconds=REQUEST_SECONDS)))
    return fs


def probe_data_root(data_root: str, datasets: Iterable[str]) -> None:
    """ValueError naming ``spec.data_root`` unless the object store of ``data_root`` answers and
    holds a folder ``<data_root>/<dataset>/`` for each of ``datasets`` (the root itself where
    none is given). Nothing is written."""
    import pyarrow.fs as pafs

    shown = data_root.split("?")[0].rstrip("/")
    datasets = list(dict.fromkeys(datasets))
    try:
        fs, base = pafs.FileSystem.from_uri(data_root)
        fs = impatient(fs)
        base = base.rstrip("/")
        folders = [f"{base}/{dataset}" for dataset in datasets] or [base]
        found = fs.get_file_info(folders)
        missing = [(name, folder) for name, folder, info in zip(datasets or [None], folders, found)
                   if info.type != pafs.FileType.Directory]
        bucket = fs.get_file_info(base.split("/")[0]) if missing else None
    except (OSError, ValueError) as err:  # pyarrow's ArrowInvalid (a bad URI) is a ValueError
        reason = " ".join(str(err).split())
        raise ValueError(f"spec.data_root: {shown} cannot be reached ({reason})") from err
    if not missing:
        return
    if bucket is not None and bucket.type == pafs.FileType.NotFound:
        raise ValueError(f"spec.data_root: {shown}: the bucket {base.split('/')[0]!r} does not exist")
    name, folder = missing[0]
    if name is None:
        raise ValueError(f"spec.data_root: {shown} is not a folder on its store")
    raise ValueError(f"spec.data_root: no folder {name!r} at {shown}/{name}/; put the dataset's standard "
                     "on-disk files there (see er_core/data.py)")


__all__ = ["probe_data_root"]
