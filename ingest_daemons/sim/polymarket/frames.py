"""What the simulator records after a successful write."""

from __future__ import annotations

from typing import NamedTuple

from ingest_daemons.sim.polymarket.generator import Element

# One outgoing text frame before it is written: (payload, kind, elements).
# kind: "data" (events), "malformed" (fault), "pong" (keep-alive answer).
Out = tuple[bytes, str, tuple[Element, ...]]


class SentFrame(NamedTuple):
    """One text frame written to a client.

    ``elements`` are the events the frame carries, each as ``(bytes, event_type, asset_id,
    market)``; each element's bytes are a substring of ``data`` (the whole of it for a single
    object). A malformed frame has one element of type ``malformed`` and no asset.
    """

    conn_id: int
    data: bytes
    kind: str
    elements: tuple[Element, ...]
    sent_at_ns: int
