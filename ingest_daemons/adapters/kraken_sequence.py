"""Sequence checks for Kraken, as pure state machines: futures ``seq`` and spot ``trade_id``.

Futures v1 (§C2) numbers ``book`` and ``trade`` messages per product with ``seq``; a snapshot
(``book_snapshot``, ``trade_snapshot``) sets where the count stands. Spot v2 (§C1) has no sequence on
books (the checksum is the check) but numbers trades with a ``trade_id`` sequential per pair, several
per message. Each check answers with a :class:`SeqVerdict`; the caller turns a ``GAP`` into a marker
(and, for a futures book, a resubscribe).

Keys are whatever the caller scopes a sequence by: ``("book", "PF_XBTUSD")`` and
``("trade", "PF_XBTUSD")`` are separate counts on futures, a symbol such as ``BTC/USD`` on spot.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from enum import Enum
from typing import NamedTuple


class SeqStatus(Enum):
    OK = "ok"  # exactly the next number(s)
    FIRST = "first"  # nothing to compare with yet (the first message, or a snapshot): the count starts here
    GAP = "gap"  # numbers were skipped: ``expected`` is what should have come, ``got`` what came
    STALE = "stale"  # a number at or below one already seen (a repeat or a reordering): nothing new is missing


class SeqVerdict(NamedTuple):
    status: SeqStatus
    key: Hashable
    expected: int | None = None
    got: int | None = None

    @property
    def missing(self) -> int:
        """How many numbers were skipped (0 unless ``GAP``)."""
        if self.status is not SeqStatus.GAP or self.expected is None or self.got is None:
            return 0
        return self.got - self.expected


class SequenceTracker:
    """The last number seen per key; each new number must be the next one.

    Used for futures ``seq`` (one number per message) and, through :meth:`observe_run`, for spot
    ``trade_id`` runs (several per message, consecutive among themselves).
    """

    def __init__(self) -> None:
        self._last: dict[Hashable, int] = {}

    def reset(self) -> None:
        """A new socket: sequences restart from the snapshots it brings."""
        self._last.clear()

    def forget(self, key: Hashable) -> None:
        """An unsubscribe or a resync: the next number starts a new count."""
        self._last.pop(key, None)

    def last(self, key: Hashable) -> int | None:
        return self._last.get(key)

    def restart(self, key: Hashable, last: int) -> SeqVerdict:
        """A snapshot says the count stands at ``last``."""
        self._last[key] = last
        return SeqVerdict(SeqStatus.FIRST, key, None, last)

    def observe(self, key: Hashable, seq: int) -> SeqVerdict:
        last = self._last.get(key)
        if last is None:
            self._last[key] = seq
            return SeqVerdict(SeqStatus.FIRST, key, None, seq)
        if seq == last + 1:
            self._last[key] = seq
            return SeqVerdict(SeqStatus.OK, key, seq, seq)
        if seq <= last:
            return SeqVerdict(SeqStatus.STALE, key, last + 1, seq)
        self._last[key] = seq
        return SeqVerdict(SeqStatus.GAP, key, last + 1, seq)

    def observe_run(self, key: Hashable, ids: Sequence[int]) -> SeqVerdict:
        """Several numbers in wire order (spot trades in one message): the first is checked against
        the last seen, then each against the one before; the first break is reported."""
        if not ids:
            return SeqVerdict(SeqStatus.OK, key)
        verdict = self.observe(key, ids[0])
        prev = ids[0]
        for n in ids[1:]:
            if n != prev + 1 and verdict.status is not SeqStatus.GAP:
                verdict = SeqVerdict(SeqStatus.GAP if n > prev else SeqStatus.STALE, key, prev + 1, n)
            prev = n
        self._last[key] = max(self._last.get(key, prev), prev)
        return verdict
