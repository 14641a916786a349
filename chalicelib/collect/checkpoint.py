"""The collector's own memory of every bandwidth counter: the last value it used per series.

Deltas are taken against this checkpoint, not against Prometheus history, so a wiped
Prometheus, a scrape gap of any length or a late sample can neither re-count a lifetime
counter nor lose bytes: counters are cumulative, so whatever flowed since the checkpoint is
in the next value the collector sees.

A service's checkpoint travels in its ServiceUsage item (written in the same chunk anyway;
the store keeps one too large for the item in pages beside it, core/store.py). The item keeps
the checkpoint it started the chunk from too, so a chunk that is retried after a partial
failure starts from the same baseline and writes the same absolute values again.

Every series costs bytes in every active minute of its service (per-consumer metrics multiply
series), so the stored form is compact (see "Stored form" below): about 10-15 bytes a series
for the current checkpoint and 1-4 for the previous one, where a plain record took 24 and 24.
"""
from __future__ import annotations

import hashlib
import math
import struct
from dataclasses import dataclass, field
from itertools import groupby
from typing import Dict, Iterable, List, Optional, Tuple

from chalicelib.core.errors import StoreError
from chalicelib.core.varint import Unreadable
from chalicelib.core.varint import get as _get
from chalicelib.core.varint import put as _put

Labels = Tuple[Tuple[str, str], ...]

# -- Stored form ---------------------------------------------------------------------------------
# LEGACY (written until 2026-12): no header, 24 bytes a series (8-byte series id, float64 value,
#   int64 sample time in ms), sorted by id. Still read: items written before the change keep it
#   until their service's next active minute. Recognised by its length, a multiple of 24, which
#   no blob of the formats below has (they get one zero byte of padding when they would).
# CURRENT (first byte 1): the sample times of the checkpoint once each (a table: the series of
#   one scrape share a timestamp), then per series, sorted by id: its 8-byte id and one varint,
#   ``value << tag_bits | tag``, where the tag is the index of its time in the table and one bit
#   saying the value is not a whole number (then the varint holds the tag only and a float64
#   follows). Counters of bytes are whole numbers, so a series usually takes 8 bytes + 2-6.
# PREVIOUS (first byte 2): the checkpoint a chunk started from, as its difference from the
#   current checkpoint stored beside it (the item's ``checkpoint``), whose fingerprint it
#   carries: per series of the current one, in order, either a run of series the same in both
#   or absent from the previous one, or the value's difference (and the time's index in its own
#   table); then the series only the previous one has, in full. In a busy minute each series
#   takes 1-4 bytes; a run of series idle or new in the minute, a byte or two for the run.
# An empty checkpoint is stored as no bytes in every format.
_LEGACY_ENTRY = struct.Struct("<8sdq")
_FLOAT = struct.Struct("<d")
_CURRENT, _PREVIOUS = 1, 2
_ID = 8
_FINGERPRINT = 4
# The kinds of a PREVIOUS entry (its varint's two low bits).
_SAME, _ABSENT, _DIFFERENCE, _FLOAT_VALUE = 0, 1, 2, 3
_WHOLE_LIMIT = 2 ** 64  # whole values from here on are kept as float64 (never seen in a counter)


def series_id(key: Labels) -> bytes:
    return hashlib.blake2b(repr(key).encode(), digest_size=8).digest()


@dataclass(frozen=True)
class Reading:
    value: float
    at_ms: int  # the sample's timestamp


class UnreadableCheckpoint(Unreadable):
    """A stored checkpoint that cannot be decoded (or a previous one not of its current one)."""


@dataclass
class Checkpoint:
    """The last reading used per series of one service, valid as of ``at`` (a window end)."""

    at: Optional[int] = None
    readings: Dict[bytes, Reading] = field(default_factory=dict)

    def pack(self) -> bytes:
        """The stored form of this checkpoint by itself (CURRENT)."""
        return _pack_current(_in_order(self.readings))

    def pack_against(self, current: "Checkpoint", current_blob: bytes) -> bytes:
        """The stored form of this checkpoint as its difference from ``current`` (PREVIOUS), whose
        stored form is ``current_blob``: it can be read back only together with that blob."""
        return _pack_previous(self.readings, _in_order(current.readings), current_blob)

    @classmethod
    def unpack(cls, blob: Optional[bytes], at, current: Optional[bytes] = None) -> "Checkpoint":
        """The checkpoint stored as ``blob`` (any format); a PREVIOUS one needs the ``current``
        blob stored beside it. Raises UnreadableCheckpoint rather than guess."""
        as_of = int(at) if at is not None else None
        blob = bytes(blob or b"")
        if not blob:
            return cls(as_of)
        try:
            if len(blob) % _LEGACY_ENTRY.size == 0:
                readings = {sid: Reading(value, at_ms) for sid, value, at_ms in _LEGACY_ENTRY.iter_unpack(blob)}
            elif blob[0] == _CURRENT:
                readings = _read_current(blob)
            elif blob[0] == _PREVIOUS:
                if current is None or _fingerprint(bytes(current)) != blob[1:1 + _FINGERPRINT]:
                    raise UnreadableCheckpoint("a previous checkpoint stored beside another current one")
                readings = _read_previous(blob, cls.unpack(current, None).readings)
            else:
                raise UnreadableCheckpoint(f"unknown checkpoint format {blob[0]}")
        except UnreadableCheckpoint:
            raise
        except (Unreadable, IndexError, struct.error) as e:
            raise UnreadableCheckpoint(f"a truncated checkpoint: {e}") from e
        return cls(as_of, readings)

    def copy(self) -> "Checkpoint":
        return Checkpoint(self.at, dict(self.readings))


def pack_with_previous(current: Checkpoint, previous: Checkpoint) -> Tuple[bytes, bytes]:
    """The stored forms of a chunk's new checkpoint and of the one it started from, to be kept
    together in one item (the previous one is stored as its difference from the new one)."""
    entries = _in_order(current.readings)
    blob = _pack_current(entries)
    return blob, _pack_previous(previous.readings, entries, blob)


def baseline_for_chunk(item, start: int) -> Optional[Checkpoint]:
    """The checkpoint a chunk starting at ``start`` must begin from, for one service's item.

    The item's current checkpoint when it is as of ``start`` or earlier (the service was idle
    since, so its counters have not moved); the one it began from when a failed attempt of
    this same chunk already advanced it. None when the item holds no usable checkpoint."""
    if item is None:
        return None
    try:
        if item.checkpoint_at is not None and int(item.checkpoint_at) <= start:
            return Checkpoint.unpack(item.checkpoint, item.checkpoint_at)
        if item.previous_checkpoint_at is not None and int(item.previous_checkpoint_at) == start:
            return Checkpoint.unpack(item.previous_checkpoint, item.previous_checkpoint_at, item.checkpoint)
    except UnreadableCheckpoint as e:
        # Counting on without it would count lifetime counters again from zero.
        raise StoreError(f"the checkpoint of {item.service!r} is unreadable: {e}") from e
    return None


# -- encoding helpers ----------------------------------------------------------------------------
Entries = List[Tuple[bytes, Reading, Optional[int]]]  # by series id: its reading, its value if whole


def _in_order(readings: Dict[bytes, Reading]) -> Entries:
    return [(sid, reading, _whole(reading.value)) for sid, reading in sorted(readings.items())]


def _pack_current(entries: Entries) -> bytes:
    if not entries:
        return b""
    times = _TimeTable(r.at_ms for _, r, _ in entries)
    float_bit = 1 if any(whole is None for _, _, whole in entries) else 0
    tag_bits = times.bits + float_bit
    out = bytearray([_CURRENT])
    times.write(out)
    _put(out, tag_bits)
    _put(out, len(entries))
    for sid, reading, whole in entries:
        out += sid
        tag = times.index[reading.at_ms] << float_bit
        if whole is None:
            _put(out, tag | 1)
            out += _FLOAT.pack(reading.value)
        else:
            _put(out, whole << tag_bits | tag)
    return _padded(out)


def _pack_previous(readings: Dict[bytes, Reading], current: Entries, current_blob: bytes) -> bytes:
    if not readings:
        return b""
    kinds, moved = [], []  # per current series its kind; the readings of those that moved
    for sid, now, whole_now in current:
        before = readings.get(sid)
        if before is None:
            kinds.append(_ABSENT)
        elif before is now or (before.value == now.value and before.at_ms == now.at_ms):
            kinds.append(_SAME)
        else:
            kinds.append(_DIFFERENCE)
            moved.append((before, whole_now))
    only: List[Tuple[bytes, Reading]] = []  # series only this checkpoint has
    if len(readings) > len(kinds) - kinds.count(_ABSENT):
        ids = {sid for sid, _, _ in current}
        only = sorted((sid, r) for sid, r in readings.items() if sid not in ids)
    # The times of the series stored with their own reading (not those the same in both).
    times = _TimeTable([before.at_ms for before, _ in moved] + [r.at_ms for _, r in only])
    time_bits = times.bits
    shift = 2 + time_bits
    out = bytearray([_PREVIOUS])
    out += _fingerprint(current_blob)
    times.write(out)
    _put(out, time_bits)
    differences = iter(moved)
    for kind, group in groupby(kinds):
        if kind != _DIFFERENCE:  # a run of series the same in both, or absent from this one
            _put(out, (sum(1 for _ in group) - 1) << shift | kind)
            continue
        for _ in group:
            before, whole_now = next(differences)
            tag = times.index[before.at_ms] << 2
            whole_before = _whole(before.value)
            if whole_now is None or whole_before is None:
                _put(out, tag | _FLOAT_VALUE)
                out += _FLOAT.pack(before.value)
            else:
                _put(out, _zigzag(whole_now - whole_before) << shift | tag | _DIFFERENCE)
    # Then the series only this checkpoint has (none, as the collector only ever adds series).
    _put(out, len(only))
    for sid, reading in only:
        out += sid
        tag = times.index[reading.at_ms] << 1
        whole = _whole(reading.value)
        if whole is None:
            _put(out, tag | 1)
            out += _FLOAT.pack(reading.value)
        else:
            _put(out, whole << (time_bits + 1) | tag)
    return _padded(out)


class _TimeTable:
    """The distinct sample times of a checkpoint, ascending, and each one's index."""

    def __init__(self, times: Iterable[int]):
        self.times: List[int] = sorted(set(times))
        self.index = {t: i for i, t in enumerate(self.times)}

    @property
    def bits(self) -> int:
        """The bits an index into the table takes."""
        return (max(len(self.times), 1) - 1).bit_length()

    def write(self, out: bytearray) -> None:
        _put(out, len(self.times))
        previous = 0
        for n, t in enumerate(self.times):
            _put(out, _zigzag(t) if n == 0 else t - previous)
            previous = t


def _read_times(blob: bytes, pos: int) -> Tuple[List[int], int]:
    count, pos = _get(blob, pos)
    times: List[int] = []
    for n in range(count):
        step, pos = _get(blob, pos)
        times.append(_unzigzag(step) if n == 0 else times[-1] + step)
    return times, pos


def _read_current(blob: bytes) -> Dict[bytes, Reading]:
    times, pos = _read_times(blob, 1)
    tag_bits, pos = _get(blob, pos)
    count, pos = _get(blob, pos)
    float_bit = 1 if tag_bits > (max(len(times), 1) - 1).bit_length() else 0
    mask = (1 << tag_bits) - 1
    readings = {}
    for _ in range(count):
        sid, pos = blob[pos:pos + _ID], pos + _ID
        code, pos = _get(blob, pos)
        tag = code & mask
        if tag & float_bit:
            value, pos = _FLOAT.unpack_from(blob, pos)[0], pos + _FLOAT.size
        else:
            value = float(code >> tag_bits)
        readings[sid] = Reading(value, times[tag >> float_bit])
    _check_end(blob, pos)
    return readings


def _read_previous(blob: bytes, current: Dict[bytes, Reading]) -> Dict[bytes, Reading]:
    times, pos = _read_times(blob, 1 + _FINGERPRINT)
    time_bits, pos = _get(blob, pos)
    shift, mask = 2 + time_bits, (1 << time_bits) - 1
    readings = {}
    entries = iter(sorted(current.items()))
    remaining = len(current)
    while remaining:
        code, pos = _get(blob, pos)
        kind, tag, payload = code & 3, (code >> 2) & mask, code >> shift
        if kind in (_SAME, _ABSENT):
            if payload + 1 > remaining:
                raise UnreadableCheckpoint("a run past the last series")
            for _ in range(payload + 1):
                sid, now = next(entries)
                if kind == _SAME:
                    readings[sid] = now
            remaining -= payload + 1
            continue
        sid, now = next(entries)
        remaining -= 1
        if kind == _FLOAT_VALUE:
            value, pos = _FLOAT.unpack_from(blob, pos)[0], pos + _FLOAT.size
        elif _whole(now.value) is None:
            raise UnreadableCheckpoint("a difference from a value that is not a whole number")
        else:
            value = float(int(now.value) - _unzigzag(payload))
        readings[sid] = Reading(value, times[tag])
    count, pos = _get(blob, pos)
    for _ in range(count):
        sid, pos = blob[pos:pos + _ID], pos + _ID
        code, pos = _get(blob, pos)
        tag = code & ((1 << (time_bits + 1)) - 1)
        if tag & 1:
            value, pos = _FLOAT.unpack_from(blob, pos)[0], pos + _FLOAT.size
        else:
            value = float(code >> (time_bits + 1))
        readings[sid] = Reading(value, times[tag >> 1])
    _check_end(blob, pos)
    return readings


def _whole(value: float) -> Optional[int]:
    """The value as a non-negative whole number when it is exactly one (-0.0 is not: it would
    come back as 0.0), else None (kept as float64)."""
    if value.__class__ is not float:
        value = float(value)  # an int from a test's stand-in for Prometheus
    if value.is_integer() and 0.0 < value < _WHOLE_LIMIT:
        return int(value)
    if value == 0.0 and math.copysign(1.0, value) > 0:
        return 0
    return None


def _padded(out: bytearray) -> bytes:
    if len(out) % _LEGACY_ENTRY.size == 0:
        out.append(0)  # never a multiple of 24: that length is the legacy format's
    return bytes(out)


def _check_end(blob: bytes, pos: int) -> None:
    if blob[pos:] not in (b"", b"\0") or pos > len(blob):
        raise UnreadableCheckpoint("bytes after the last series")


def _fingerprint(current_blob: bytes) -> bytes:
    return hashlib.blake2b(current_blob, digest_size=_FINGERPRINT).digest()


def _zigzag(n: int) -> int:
    return n << 1 if n >= 0 else (-n << 1) - 1


def _unzigzag(n: int) -> int:
    return n >> 1 if not n & 1 else -((n + 1) >> 1)
