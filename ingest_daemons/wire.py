"""What a connector puts on the wire next to the exchange frame: NATS headers and marker events.

The exchange frame is the message payload, byte-for-byte (never edited). Everything ssmd adds
travels in headers, and events ssmd itself observes (sequence gaps, connects, disconnects,
terminal errors) are published as small JSON *marker* messages into the same streams, so the
archive itself says where data may be missing and why.

Marker subjects (``naming.SubjectBuilder.subject`` with these types):

* ``{env}.{feed}.{category}.json.gap.{ticker}`` — a sequence gap seen on a market's subscription.
* ``{env}.{feed}.{category}.json.status.{connection}`` — connection events, published once into
  every category stream the connection feeds.
* ``{env}.{feed}.{category}.json.unparsed.{connection}`` — a frame that could not be classified;
  the payload is the raw frame (not a marker), kept so nothing is lost.
"""

from __future__ import annotations

from typing import Any, Final

import orjson

# Headers on every published message.
HDR_MSG_ID: Final = "Nats-Msg-Id"  # JetStream de-duplication: the same id on every retry of a frame
HDR_RECEIVED_NS: Final = "Ssmd-Received-Ns"  # connector's receive time, Unix ns (wall clock)
HDR_SHARD: Final = "Ssmd-Shard"
HDR_CONNECTION: Final = "Ssmd-Conn"  # connection id, unique per connector process and socket
HDR_MARKER: Final = "Ssmd-Marker"  # present (value = marker kind) on marker messages only
HDR_CHUNK: Final = "Ssmd-Chunk"  # one chunk of a frame larger than max_payload (see frame_chunks)

# Subject message types ssmd itself produces.
TYPE_GAP: Final = "gap"
TYPE_STATUS: Final = "status"
TYPE_UNPARSED: Final = "unparsed"
MARKER_TYPES: Final = frozenset({TYPE_GAP, TYPE_STATUS})

# Kinds of status markers.
STATUS_CONNECTED: Final = "connected"
STATUS_DISCONNECTED: Final = "disconnected"
STATUS_RESUBSCRIBED: Final = "resubscribed"
STATUS_TERMINAL_ERROR: Final = "terminal_error"


def marker_payload(kind: str, **fields: Any) -> bytes:
    """``{"ssmd_marker": kind, ...}`` as compact JSON (fields must be JSON-serialisable)."""
    return orjson.dumps({"ssmd_marker": kind, **fields})
