"""What the simulator hands to a socket, and what it records after a successful write."""

from __future__ import annotations

from typing import NamedTuple

# One outgoing text frame before it is written:
#   (payload, channel, type, market_ticker, sid, seq)
# ``channel`` is None for control replies (subscribed/ok/error/...), which are recorded apart from
# data frames. A plain tuple, not a class: millions are made per second when flooding.
Out = tuple[bytes, str | None, str, str | None, int | None, int | None]


class SentFrame(NamedTuple):
    """One frame the simulator wrote to a client, recorded after the write was accepted.

    ``data`` is exactly the text frame's payload (UTF-8 bytes as sent), so a test can compare it
    byte for byte with what a connector stored. ``sent_at_ns`` is ``time.time_ns()`` taken once per
    written batch. "Accepted" means handed to the transport of an open, not-closing connection; like
    any TCP sender the simulator cannot know whether the client read it before a disconnect.
    """

    conn_id: int
    data: bytes
    channel: str
    type: str
    market_ticker: str | None
    sid: int | None
    seq: int | None
    sent_at_ns: int
