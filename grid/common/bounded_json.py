"""JSON read from storage that others can write (a shared bucket, a copied folder), with a
bound on its size and on its nesting depth.

``json.loads`` alone trusts its input twice over: a record of a few GB is read and parsed
whole, and a few hundred thousand nested ``[`` end in a ``RecursionError`` half-way through a
command. Every JSON record er-grid reads back (commit records, ``grid_spec.json``, a
checkpoint's ``epoch.json``) comes through :func:`bounded_json` instead, so each of those is
one :class:`~grid.common.errors.DamagedRecord` naming the record. Callers read at most
``max_bytes + 1`` bytes from their stream (:func:`read_at_most`), so an endless file such as
``/dev/zero`` is cut off before it is held.
"""

from __future__ import annotations

import json
from typing import Union

from .errors import DamagedRecord

#: Deepest nesting any er-grid record has is about 8 (a spec record's detection plan); 32 leaves room.
MAX_DEPTH = 32


def read_at_most(stream, max_bytes: int) -> bytes:
    """At most ``max_bytes + 1`` bytes of ``stream``: one byte more than allowed shows the
    record is too large without reading the rest."""
    return stream.read(max_bytes + 1)


def bounded_json(data: Union[str, bytes], what: str, max_bytes: int, max_depth: int = MAX_DEPTH):
    """The parsed value of ``data``; :class:`DamagedRecord` ``"<what> is damaged (...)"`` when it
    is longer than ``max_bytes`` (characters for a str), nested deeper than ``max_depth``
    levels, or not JSON."""
    if len(data) > max_bytes:
        raise DamagedRecord(f"{what} is damaged (more than {max_bytes:,} bytes; a record of its kind is smaller)")
    try:
        value = json.loads(data)
    except RecursionError as err:  # the C parser's own guard, long before the stack runs out
        raise DamagedRecord(f"{what} is damaged (nested deeper than {max_depth} levels)") from err
    except ValueError as err:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise DamagedRecord(f"{what} is damaged (not JSON: {str(err)[:120]})") from err
    if depth(value, max_depth) > max_depth:
        raise DamagedRecord(f"{what} is damaged (nested deeper than {max_depth} levels)")
    return value


def depth(value, limit: int) -> int:
    """Nesting depth of a parsed JSON value (a scalar is 0), counted without recursion and
    stopping once past ``limit``."""
    deepest, stack = 0, [(value, 0)]
    while stack:
        item, level = stack.pop()
        if isinstance(item, (list, dict)):
            level += 1
            deepest = max(deepest, level)
            if deepest > limit:
                return deepest
            stack.extend((child, level) for child in (item.values() if isinstance(item, dict) else item))
    return deepest


__all__ = ["MAX_DEPTH", "bounded_json", "depth", "read_at_most"]
