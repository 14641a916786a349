"""Unsigned LEB128 varints: the compact whole numbers of the collector's stored binary forms
(its checkpoints, collect/checkpoint.py; a bucket's packed per-name bytes, core/packed.py)."""
from __future__ import annotations

from typing import Tuple

MAX_BITS = 640  # no counter of ours comes near; a longer run of continuation bytes is a corrupt blob


class Unreadable(ValueError):
    """A stored binary form that cannot be decoded."""


def put(out: bytearray, n: int) -> None:
    """Append ``n`` (>= 0)."""
    while n >= 0x80:
        out.append(n & 0x7F | 0x80)
        n >>= 7
    out.append(n)


def get(blob: bytes, pos: int) -> Tuple[int, int]:
    """The number at ``pos`` and the position after it."""
    result = shift = 0
    while True:
        if pos >= len(blob):
            raise Unreadable("a number runs past the end")
        byte = blob[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift > MAX_BITS:
            raise Unreadable("a number too long")
