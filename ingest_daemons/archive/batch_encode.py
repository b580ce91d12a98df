"""A whole delivery batch turned into archive lines at once: the archive loop's common case.

The per-message loop in :func:`ingest_daemons.archive.partition.archive_window` is the reference.
This module does the same work for a batch in which every message is the plain case — the next
sequences with no hole, ids already taken as new by :meth:`MsgIdSet.add_run`, subjects already seen
and not markers, a receive time that is a plain integer (at least a millisecond), a payload that is
one line of valid JSON, no chunk envelope — with C-level passes over the batch (``map``,
``compress``, ``%``-formatting, ``bytes.join``) instead of a Python step per message. Anything
else returns None before a single counter is touched, and the caller runs the loop: both paths
write the same bytes and collect the same manifest figures (tests/ingest_daemons/archive/
test_batch_encode.py checks it against the reference encoding).

Why it is exact: lines are formatted with the loop's own template; the clock profile's histograms
keep values per message type in arrival order, and each type's values go into its own lists in
that order here too (``compress`` keeps order); the stamps that are neither an integer ``ts_ms``
nor an integer ``ts`` go through the loop's own per-message logic, in order.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import compress, repeat
from operator import and_, floordiv, is_, itemgetter, mul, ne, not_, or_, sub
from typing import Any, cast

import orjson

from ingest_daemons.archive.clock_profile import TypeClock
from ingest_daemons.archive.log_histogram import LogHistogram
from ingest_daemons.archive.reader import Record

LINE = b'{"seq":%d,"ts":%d,"subject":%s,"recv_ns":%s,"frame":%s}\n'  # the loop's template
_SEQ, _TS, _SUBJECT, _RECV, _PAYLOAD = (itemgetter(i) for i in range(5))
_JSON, _CLOCK = itemgetter(0), itemgetter(3)  # of a subject's info list (see archive_window)
_MIN_RECV_DIGITS = 7  # below a millisecond the loop counts the message as without receive time
_MAX_RECV_DIGITS = 20
_loads, _JSONDecodeError = orjson.loads, orjson.JSONDecodeError
_get: Callable[[Any, str], Any] = dict.get  # raises TypeError on anything but a dict


def encode_batch(
    batch: list[Record],
    expected: int,
    subjects: dict[bytes, list[Any]],
    marker_subjects: set[bytes],
    last_recv: bytes | None,
    store: LogHistogram,
) -> tuple[bytes, list[int], list[bytes]] | None:
    """The lines of ``batch``, or None when a message needs the per-message loop.

    On success the batch's clock figures are recorded (``store``: receive → store lag at each new
    receive time after ``last_recv``; each subject's clock) and ``(lines, receive ms, subjects)``
    is returned: the caller takes the last receive time and counts the subjects.
    """
    n = len(batch)
    seqs = list(map(_SEQ, batch))
    if seqs[0] != expected or seqs != list(range(expected, expected + n)):
        return None
    names = list(map(_SUBJECT, batch))
    found = list(map(subjects.get, names))
    if None in found or not marker_subjects.isdisjoint(names):
        return None
    infos = cast(list[list[Any]], found)
    recvs = list(map(_RECV, batch))
    if None in recvs:
        return None
    lengths = list(map(len, recvs))
    if min(lengths) < _MIN_RECV_DIGITS or max(lengths) > _MAX_RECV_DIGITS or not b"".join(recvs).isdigit():
        return None
    if b" 0" in b" " + b" ".join(recvs):  # a leading zero: the loop rewrites it
        return None
    payloads = list(map(_PAYLOAD, batch))
    joined = b"".join(payloads)
    if 10 in joined or 13 in joined:  # LF / CR would split the line
        return None
    try:
        frames = list(map(_loads, payloads))
    except _JSONDecodeError:
        return None

    # Every message is the plain case: record.
    tss = list(map(_TS, batch))
    recv_ns = list(map(int, recvs))
    changed = list(map(ne, recvs, [last_recv, *recvs[:-1]]))  # frames of one socket read share it
    store.extend(map(floordiv, map(sub, compress(tss, changed), compress(recv_ns, changed)), repeat(1_000)))
    receive_ms = list(map(floordiv, recv_ns, repeat(1_000_000)))
    _stamp_lags(frames, list(map(_CLOCK, infos)), receive_ms)
    lines = b"".join(map(LINE.__mod__, zip(seqs, tss, map(_JSON, infos), recvs, payloads, strict=True)))
    return lines, receive_ms, names


def _stamp_lags(frames: list[Any], clocks: list[TypeClock | None], receive_ms: list[int]) -> None:
    """Exchange stamp → receive lags of a batch, per message type (clock_profile.py)."""
    try:
        msgs = list(map(_get, frames, repeat("msg")))  # TypeError: a frame is not an object
        stamps = list(map(_get, msgs, repeat("ts_ms")))  # TypeError: a msg is missing or not an object
        seconds = list(map(_get, msgs, repeat("ts")))
    except TypeError:
        for clock, frame, ms in zip(clocks, frames, receive_ms, strict=True):
            if clock is not None:
                stamp_lag(clock, frame, ms)
        return
    is_ms = list(map(is_, map(type, stamps), repeat(int)))
    is_seconds = list(map(and_, map(not_, is_ms), map(is_, map(type, seconds), repeat(int))))
    for clock in {c for c in clocks if c is not None}:
        mine = list(map(is_, clocks, repeat(clock)))
        take = list(map(and_, mine, is_ms))
        clock.lags.extend(map(sub, compress(receive_ms, take), compress(stamps, take)))
        take = list(map(and_, mine, is_seconds))
        clock.lags_seconds.extend(
            map(sub, compress(receive_ms, take), map(mul, compress(seconds, take), repeat(1000))))
    rest = list(map(not_, map(or_, is_ms, is_seconds)))
    for clock, msg, stamp, ms in zip(compress(clocks, rest), compress(msgs, rest), compress(seconds, rest),
                                     compress(receive_ms, rest), strict=True):
        if clock is None:
            continue
        if stamp is None and "time" not in msg:  # e.g. a book snapshot
            clock.without += 1
        else:
            try:
                clock.other(msg, ms)
            except (KeyError, TypeError, AttributeError):
                clock.without += 1


def stamp_lag(clock: TypeClock, frame: Any, receive_ms: int) -> None:
    """One message's exchange stamp → receive lag (``receive_ms`` non-zero), as the loop does it."""
    try:
        msg = frame["msg"]
        stamp = msg.get("ts_ms")
        if stamp.__class__ is int:
            clock.add(receive_ms - stamp)
        else:
            stamp = msg.get("ts")
            if stamp.__class__ is int:  # whole seconds (before ts_ms existed)
                clock.add_seconds(receive_ms - stamp * 1000)
            elif stamp is None and "time" not in msg:  # e.g. a book snapshot
                clock.without += 1
            else:
                clock.other(msg, receive_ms)
    except (KeyError, TypeError, AttributeError):
        clock.without += 1
