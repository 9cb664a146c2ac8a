"""Whether a spec's storage can hold a multi-node run: every node writes its trials' checkpoints
and rows there, and the driver reads them back, so all of them must see one folder.

- an object store (``s3://``, ``gs://``, any scheme but ``file``/``local``) is shared;
- a POSIX folder (a path, or a ``file://`` URI) is shared only where the spec says so with
  ``shared_storage: true``: a filesystem every node mounts at the same path (NFS, Lustre, GPFS,
  BeeGFS; a SLURM cluster's /scratch or /home). Nothing on one machine can tell a local disk
  from one exported to the others, so the spec's word is taken, except
- under :data:`NODE_LOCAL_ROOTS`, which are each node's own disk or memory on every cluster:
  refused even when declared shared (the path resolved first, so a link into them counts).

A local folder without the declaration is fine on one node and refused when ``num_nodes > 1``.
"""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import Optional

from grid.common.locations import storage_location

#: Folders that are on each node's own disk or in its memory on every Linux cluster.
NODE_LOCAL_ROOTS = ("/tmp", "/var/tmp", "/dev/shm", "/run")
# Schemes that name this machine's own filesystem, as pyarrow reads them.
LOCAL_SCHEMES = ("file", "local")


def is_object_store(path: str) -> bool:
    """True for object-store / remote URIs (``scheme://`` other than ``file://``/``local://``)."""
    scheme, sep, _ = path.partition("://")
    return bool(sep) and scheme.lower() not in LOCAL_SCHEMES


def posix_folder(path: str) -> Optional[str]:
    """The POSIX path a local path or ``file://`` URI names (query arguments dropped); None for
    an object store."""
    if is_object_store(path):
        return None
    _scheme, sep, rest = path.partition("://")
    return rest.partition("?")[0] if sep else path


def node_local_root(path: str) -> Optional[str]:
    """The entry of :data:`NODE_LOCAL_ROOTS` that ``path`` (resolved: absolute, links followed)
    lies under, or None."""
    resolved = PurePosixPath(storage_location(path))
    return next((root for root in NODE_LOCAL_ROOTS if resolved.is_relative_to(root)), None)


def storage_refusal(path: str, num_nodes: int, shared_storage: bool) -> Optional[str]:
    """Why ``path`` cannot be the storage of a spec with ``num_nodes`` and ``shared_storage``
    (a sentence that starts with the quoted path), or None when it can."""
    folder = posix_folder(path)
    if folder is None:
        return None
    if shared_storage:
        root = node_local_root(folder)
        if root is not None:
            return (f"{path!r} is under {root}, which is each node's own disk or memory; "
                    "shared_storage: true needs a folder every node mounts at the same path "
                    "(NFS, Lustre, GPFS: e.g. /scratch or /home)")
        return None
    if num_nodes > 1:
        return (f"{path!r} is a local path but num_nodes={num_nodes}; multi-node runs need shared "
                "storage: an object-store URI (s3://bucket/prefix, gs://bucket/prefix) or a folder every "
                "node mounts at the same path (NFS, Lustre, GPFS), declared with shared_storage: true")
    return None


__all__ = ["NODE_LOCAL_ROOTS", "is_object_store", "node_local_root", "posix_folder", "storage_refusal"]
