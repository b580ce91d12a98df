"""Each ``Nats-Msg-Id`` once per partition, however late its retry was stored.

JetStream drops a re-published ``Nats-Msg-Id`` only within the stream's ``duplicate_window``. A
frame that was stored but whose ack was lost (an outage longer than the window) is stored again
when the connector re-sends it, so the stream can hold it twice; the archive keeps the first
occurrence and counts the others.

This runs once per archived message, so it is built for the connector's ids,
``{run}.{connection}.{socket}:{n}`` (and markers' ``…:m{n}``): split into a prefix and a decimal
``n``, and per prefix remember which ``n`` were seen. Frames of one socket arrive in ``n`` order
(each stream sees a subset of them when the socket feeds several streams), so per prefix the
current *run* ``[run_start, next)`` is extended in place, and only when the order breaks is the
run written into a paged bitmap: exact, and under two bits per number in the range a socket used
during the window (about 250 KB for a million frames), whatever the number of messages. While one
socket's frames come in a row, the next ids are predicted and accepted by comparison, a whole
batch at once (:meth:`MsgIdSet.add_run`), without parsing. Ids of other shapes (no trailing
number, or a leading zero that would alias another id) go to a plain set.

Membership is exact in both directions: an id is never dropped unless that exact id was seen
earlier in the partition.
"""

from __future__ import annotations

from typing import Final

_DIGITS: Final = b"0123456789"
_MAX_DIGITS: Final = 18  # beyond this, int() gets slow (and fails past 4300 digits): an "other" id
# Bitmap pages of 1024 numbers (128 bytes), allocated only where numbers fall: small enough that
# ids numbered far apart cost about what a set of them would, large enough that a page's own
# overhead stays under a bit per number.
_PAGE_BITS: Final = 10
_PAGE_MASK: Final = (1 << _PAGE_BITS) - 1
_PAGE_BYTES: Final = 1 << (_PAGE_BITS - 3)


class _Numbers:
    """The numbers seen after one prefix: ``[run_start, next)`` plus the bits in ``pages`` (the run's
    numbers are not in the pages until the run ends)."""

    __slots__ = ("high", "next", "pages", "run_start")

    def __init__(self, n: int) -> None:
        self.run_start = n
        self.next = n + 1
        self.high = n + 1  # one past the largest number seen
        self.pages: dict[int, bytearray] = {}

    def _bit(self, n: int) -> bool:
        page = self.pages.get(n >> _PAGE_BITS)
        return page is not None and bool(page[(n & _PAGE_MASK) >> 3] & (1 << (n & 7)))

    def set_run(self, first: int, end: int) -> None:
        """Set the bits of ``[first, end)`` (a finished run) in the pages."""
        pages = self.pages
        n = first
        while n < end:
            index = n >> _PAGE_BITS
            page = pages.get(index)
            if page is None:
                page = pages[index] = bytearray(_PAGE_BYTES)
            stop = min(end, (index + 1) << _PAGE_BITS)
            # single bits up to a byte boundary, whole bytes, single bits after
            while n < stop and n & 7:
                page[(n & _PAGE_MASK) >> 3] |= 1 << (n & 7)
                n += 1
            whole = (stop - n) >> 3
            if whole:
                offset = (n & _PAGE_MASK) >> 3
                page[offset : offset + whole] = b"\xff" * whole
                n += whole << 3
            while n < stop:
                page[(n & _PAGE_MASK) >> 3] |= 1 << (n & 7)
                n += 1

    def add_below(self, n: int) -> bool:
        """``n`` is below the largest number seen (a retry, or a late first occurrence): True if
        it was not seen before (now it is)."""
        if self.run_start <= n < self.next or self._bit(n):
            return False
        if n == self.next:
            self.next = n + 1
        else:
            self.set_run(self.run_start, self.next)
            self.run_start, self.next = n, n + 1
        return True


class MsgIdSet:
    """The ``Nats-Msg-Id`` values of one partition; :meth:`add` says whether an id is new."""

    __slots__ = ("_expect", "_expect_numbers", "_expect_prefix", "_numbered", "_other")

    def __init__(self) -> None:
        self._numbered: dict[bytes, _Numbers] = {}
        self._other: set[bytes] = set()
        # The id that continues the last prefix's run at the top, if any: one bytes comparison
        # accepts it (no parsing), which is most messages when one socket's frames come in a row.
        self._expect: bytes | None = None
        self._expect_prefix = b""
        self._expect_numbers: _Numbers | None = None

    def add_run(self, ids: list[bytes | None]) -> bool:
        """Record ``ids`` and return True when they are exactly the next ids of the expected run
        (one socket's frames in a row: the common case, checked without a Python loop); else
        record nothing and return False, and the caller passes each id to :meth:`add`.

        The check compares two byte strings: the ids joined with a line feed after each, and the
        expected ids formatted by one ``%`` (a call per id measured ~500 instructions dearer per
        message). Equal strings mean equal lists: no expected id holds a line feed (the prefix is
        checked), so both strings have theirs at the same places."""
        numbers = self._expect_numbers
        if self._expect is None or numbers is None or not ids or ids[0] != self._expect:
            return False
        prefix = self._expect_prefix
        if b"\n" in prefix:
            return False
        try:
            joined = b"\n".join(ids)  # type: ignore[arg-type]  # an id of None (no header) raises TypeError
        except TypeError:
            return False
        n, end = numbers.next, numbers.next + len(ids)
        template = prefix.replace(b"%", b"%%") + b"%d\n"
        if joined + b"\n" != (template * len(ids)) % tuple(range(n, end)):
            return False
        numbers.next = numbers.high = end
        self._expect = b"%s%d" % (prefix, end)
        return True

    def add(self, msg_id: bytes) -> bool:
        """True the first time ``msg_id`` is seen, False for every later occurrence."""
        if msg_id == self._expect:
            numbers = self._expect_numbers
            assert numbers is not None
            n = numbers.next
            numbers.next = numbers.high = n + 1
            self._expect = b"%s%d" % (self._expect_prefix, n + 1)
            return True
        head = msg_id.rstrip(_DIGITS)
        cut = len(head)
        digits = len(msg_id) - cut
        if digits == 0 or digits > _MAX_DIGITS or (digits > 1 and msg_id[cut] == 48):  # 48: "0"
            return self._add_other(msg_id)
        n = int(msg_id[cut:])
        numbers = self._numbered.get(head)
        if numbers is None:
            self._numbered[head] = _Numbers(n)
            return True
        high = numbers.high
        if n >= high:
            end = numbers.next
            if n == high == end:  # the run at the top goes on: expect it to go on
                numbers.next = numbers.high = n + 1
                self._expect = b"%s%d" % (head, n + 1)
                self._expect_prefix, self._expect_numbers = head, numbers
                return True
            # A jump forward (the socket sent the numbers between to other streams): new for
            # sure; the finished run goes into the bitmap (one bit, usually) and n starts the next.
            first = numbers.run_start
            if end - first == 1:
                pages = numbers.pages
                page = pages.get(first >> _PAGE_BITS)
                if page is None:
                    page = pages[first >> _PAGE_BITS] = bytearray(_PAGE_BYTES)
                page[(first & _PAGE_MASK) >> 3] |= 1 << (first & 7)
            else:
                numbers.set_run(first, end)
            numbers.run_start = n
            numbers.next = numbers.high = n + 1
            if numbers is self._expect_numbers:
                self._expect = None
            return True
        if numbers is self._expect_numbers:
            self._expect = None
        return numbers.add_below(n)

    def _add_other(self, msg_id: bytes) -> bool:
        if msg_id in self._other:
            return False
        self._other.add(msg_id)
        return True

    @property
    def bitmap_bytes(self) -> int:
        """Memory held by the bitmaps (for tests and the benchmark)."""
        return sum(len(page) for numbers in self._numbered.values() for page in numbers.pages.values())
