"""The collector's own memory of every bandwidth counter: the last value it used per series.

Deltas are taken against this checkpoint, not against Prometheus history, so a wiped
Prometheus, a scrape gap of any length or a late sample can neither re-count a lifetime
counter nor lose bytes: counters are cumulative, so whatever flowed since the checkpoint is
in the next value the collector sees.

A service's checkpoint travels in its ServiceUsage item (written in the same chunk anyway;
the store keeps one too large for the item in pages beside it, core/store.py), packed as 24
bytes a series: an 8-byte series id (a hash of its labels, instance included),
the value and the sample's time in milliseconds. The item keeps the checkpoint it started the
chunk from too, so a chunk that is retried after a partial failure starts from the same
baseline and writes the same absolute values again.
"""
from __future__ import annotations

import hashlib
import struct
from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

Labels = Tuple[Tuple[str, str], ...]
_ENTRY = struct.Struct("<8sdq")


def series_id(key: Labels) -> bytes:
    return hashlib.blake2b(repr(key).encode(), digest_size=8).digest()


@dataclass(frozen=True)
class Reading:
    value: float
    at_ms: int  # the sample's timestamp


@dataclass
class Checkpoint:
    """The last reading used per series of one service, valid as of ``at`` (a window end)."""

    at: Optional[int] = None
    readings: Dict[bytes, Reading] = field(default_factory=dict)

    def pack(self) -> bytes:
        return b"".join(_ENTRY.pack(sid, r.value, r.at_ms) for sid, r in sorted(self.readings.items()))

    @classmethod
    def unpack(cls, blob: Optional[bytes], at) -> "Checkpoint":
        if not blob:
            return cls(int(at) if at is not None else None)
        readings = {sid: Reading(value, at_ms) for sid, value, at_ms in _ENTRY.iter_unpack(bytes(blob))}
        return cls(int(at) if at is not None else None, readings)

    def copy(self) -> "Checkpoint":
        return Checkpoint(self.at, dict(self.readings))


def baseline_for_chunk(item, start: int) -> Optional[Checkpoint]:
    """The checkpoint a chunk starting at ``start`` must begin from, for one service's item.

    The item's current checkpoint when it is as of ``start`` or earlier (the service was idle
    since, so its counters have not moved); the one it began from when a failed attempt of
    this same chunk already advanced it. None when the item holds no usable checkpoint."""
    if item is None:
        return None
    if item.checkpoint_at is not None and int(item.checkpoint_at) <= start:
        return Checkpoint.unpack(item.checkpoint, item.checkpoint_at)
    if item.previous_checkpoint_at is not None and int(item.previous_checkpoint_at) == start:
        return Checkpoint.unpack(item.previous_checkpoint, item.previous_checkpoint_at)
    return None
