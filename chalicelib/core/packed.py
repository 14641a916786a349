"""A usage bucket's bytes per consumer in their stored form: packed into one binary value.

A service's minute item is written every active minute, and with per-consumer metrics most of
it is the consumer map: as a DynamoDB map each entry costs its name plus ~30 bytes (two
attribute names, two numbers, the map's overhead), ~40 bytes for a 10-character name. Packed,
an entry is its name plus 3-10 bytes, so a minute item with 50 consumers takes one write unit
less (bench/RESULTS.md, "Consumer period items").

Format 1: the format byte, then per consumer, in name order: the length of its name in UTF-8,
the name, its ingress bytes and its egress bytes, each number a varint (core/varint.py). Only
whole numbers >= 0 can be packed; a map holding anything else is kept as a map (``pack``
returns None), which every reader still reads, as it reads the items written before this form.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional

from chalicelib.core import varint

FORMAT = 1
DIRECTIONS = ("ingress", "egress")


class UnreadablePacked(varint.Unreadable):
    """A packed value that cannot be decoded."""


def pack(counts: Mapping[str, Mapping[str, int]]) -> Optional[bytes]:
    """``{name: {"ingress": n, "egress": n}}`` packed (None: it holds a value that is not a whole
    number >= 0, or a direction other than ingress and egress)."""
    out = bytearray([FORMAT])
    for name in sorted(counts):
        entry = counts[name]
        values = [entry.get(direction, 0) for direction in DIRECTIONS]
        if set(entry) - set(DIRECTIONS) or not all(_whole(v) for v in values):
            return None
        encoded = name.encode("utf-8", "surrogatepass")
        varint.put(out, len(encoded))
        out += encoded
        for value in values:
            varint.put(out, int(value))
    return bytes(out)


def unpack(blob: bytes) -> Dict[str, Dict[str, int]]:
    """The map ``pack`` packed (every entry with both directions)."""
    blob = bytes(blob)
    if not blob or blob[0] != FORMAT:
        raise UnreadablePacked(f"unknown packed format {blob[:1].hex() or '(empty)'}")
    counts: Dict[str, Dict[str, int]] = {}
    pos = 1
    try:
        while pos < len(blob):
            length, pos = varint.get(blob, pos)
            if pos + length > len(blob):
                raise UnreadablePacked("a name runs past the end")
            name = blob[pos:pos + length].decode("utf-8", "surrogatepass")
            pos += length
            ingress, pos = varint.get(blob, pos)
            egress, pos = varint.get(blob, pos)
            counts[name] = {"ingress": ingress, "egress": egress}
    except UnicodeDecodeError as e:
        raise UnreadablePacked(f"a name that is not UTF-8: {e}") from e
    except varint.Unreadable as e:
        raise UnreadablePacked(str(e)) from e
    return counts


def _whole(value) -> bool:
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return value >= 0
    return isinstance(value, float) and value.is_integer() and value >= 0
