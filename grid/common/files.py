"""Local output files written whole or not at all (reports, query tables, figures' companions).

A temp file beside the target, then a rename over it: a failed write (disk full, permission)
never leaves an earlier file truncated, and a reader never sees half a file. A device or pipe
(``/dev/stdout``) is written through, never replaced.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Union

PathLike = Union[str, Path]


def write_bytes_atomic(path: PathLike, data: bytes) -> Path:
    target = Path(path)
    if target.exists() and not target.is_file():
        target.write_bytes(data)  # a device or pipe: written through, never replaced
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return target


def write_text_atomic(path: PathLike, text: str) -> Path:
    return write_bytes_atomic(path, text.encode("utf-8"))
