"""Each stream's JetStream state, read for the sensors in one short connection per tick.

A stream that cannot be read comes back as the error, so a sensor judges the others and leaves
that one's cursor alone until it can be read again.
"""

from __future__ import annotations

from collections.abc import Sequence

from ingest_daemons.archive.errors import ArchiveError
from ingest_daemons.archive.reader import StreamReader, StreamState
from ssmd_dagster.resources import NatsResource


def read_states(nats: NatsResource, streams: Sequence[str], name: str) -> dict[str, StreamState | ArchiveError]:
    found: dict[str, StreamState | ArchiveError] = {}
    try:
        with nats.wire_client(name) as client:
            for stream in streams:
                try:
                    found[stream] = StreamReader(client, stream).state()
                except ArchiveError as exc:
                    found[stream] = exc
    except ArchiveError as exc:  # no connection at all
        for stream in streams:
            found.setdefault(stream, exc)
    return found
