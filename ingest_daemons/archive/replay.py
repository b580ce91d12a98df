"""Replay a partition into NATS under another subject prefix, at its original pace or faster.

For backtests (tardis-style): a strategy subscribed to ``{prefix}.json.trade.>`` sees the day's
messages again, frames byte-for-byte, in stream order, spaced as they were stored (``speed`` 1),
``speed`` times faster, or as fast as NATS acknowledges them (``speed`` None).

* Subjects: the first three tokens (``env.feed.category``) are replaced by ``prefix``; the rest
  (``json.{type}.{ticker}``) is kept, so a three-token prefix like ``backtest.kalshi.economics``
  keeps replayed subjects ssmd-shaped and a stream over ``backtest.kalshi.economics.>`` can be
  archived like any other.
* Headers: ``Nats-Msg-Id`` is ``{msg_id_prefix}{original seq}`` (a retried or repeated replay
  into the same stream is de-duplicated), ``Ssmd-Received-Ns`` keeps the original receive time,
  ``Ssmd-Replay-Seq`` / ``Ssmd-Replay-Ts`` carry the original stream sequence and timestamp.
* Frames stored in chunks are whole lines in the archive and are published whole; the publisher
  splits them again if the target server's ``max_payload`` requires it. A lone chunk of a frame that
  could not be rebuilt is not replayed (it is not a frame); the result counts it.
* Delivery: with ``acked`` (default) through the connector's pipelined JetStream publisher: every
  message is acknowledged by a stream before replay returns. Without, plain NATS publishes (for
  live subscribers, no stream needed; nothing is guaranteed).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import nats

from ingest_daemons import wire
from ingest_daemons.archive.cat import ArchivedMessage, MessageFilter, iter_messages
from ingest_daemons.logs import get_logger
from ingest_daemons.nats_settings import as_settings
from ingest_daemons.publisher import JetStreamPublisher, header_block

log = get_logger("ssmd.archive.replay")

HDR_REPLAY_SEQ = "Ssmd-Replay-Seq"
HDR_REPLAY_TS = "Ssmd-Replay-Ts"
DEFAULT_DRAIN_S = 60.0
MIN_SLEEP_S = 0.001  # closer than this, publish now: sleeping would cost more than it keeps


class ReplayError(Exception):
    """Replay could not finish (NATS did not acknowledge everything in time)."""


def rewrite_subject(subject: str, prefix: str) -> str:
    """``dev.kalshi.economics.json.trade.X`` → ``{prefix}.json.trade.X``."""
    tokens = subject.split(".", 3)
    return f"{prefix}.{tokens[3]}" if len(tokens) == 4 else f"{prefix}.{subject}"


def check_prefix(prefix: str) -> str:
    tokens = prefix.split(".")
    if not prefix or any(not t or t in {"*", ">"} or any(c.isspace() for c in t) for t in tokens):
        raise ValueError(f"invalid subject prefix {prefix!r}: dot-separated tokens, no wildcards or spaces")
    return prefix


class Pacer:
    """When to publish each message: original timestamps scaled by ``speed`` from the first one.

    ``clock`` is monotonic seconds (``time.monotonic`` by default; tests pass their own).
    """

    def __init__(self, speed: float | None, clock: Callable[[], float] = time.monotonic) -> None:
        if speed is not None and speed <= 0:
            raise ValueError("speed must be positive (or None for as fast as possible)")
        self.speed = speed
        self.clock = clock
        self._origin: tuple[int, float] | None = None

    def delay(self, ts_ns: int) -> float:
        """Seconds to wait before publishing a message stored at ``ts_ns`` (0: now)."""
        if self.speed is None:
            return 0.0
        now = self.clock()
        if self._origin is None:
            self._origin = (ts_ns, now)
            return 0.0
        first_ts, started = self._origin
        due = started + (ts_ns - first_ts) / 1e9 / self.speed
        return max(0.0, due - now)


@dataclass(frozen=True)
class ReplayResult:
    published: int
    first_seq: int | None
    last_seq: int | None
    duration_s: float
    lone_chunks: int = 0  # chunks of frames that could not be rebuilt: not replayed

    @property
    def msgs_per_s(self) -> float:
        return self.published / self.duration_s if self.duration_s > 0 else 0.0


def replay_headers(message: ArchivedMessage, msg_id_prefix: str) -> dict[str, str]:
    fields = {wire.HDR_MSG_ID: f"{msg_id_prefix}{message.seq}"}
    if message.recv_ns is not None:
        fields[wire.HDR_RECEIVED_NS] = str(message.recv_ns)
    fields[HDR_REPLAY_SEQ] = str(message.seq)
    fields[HDR_REPLAY_TS] = str(message.ts_ns)
    return fields


async def replay_partition(
    data: Path,
    nats_url: str,
    prefix: str,
    *,
    speed: float | None = 1.0,
    selection: MessageFilter | None = None,
    acked: bool = True,
    msg_id_prefix: str | None = None,
    drain_timeout_s: float = DEFAULT_DRAIN_S,
    pacer: Pacer | None = None,
) -> ReplayResult:
    """Publish the partition file ``data`` under ``prefix`` (see the module docstring)."""
    check_prefix(prefix)
    pacer = pacer or Pacer(speed)
    msg_id_prefix = msg_id_prefix if msg_id_prefix is not None else f"replay:{data.parent.name}:{data.name}:"
    started = time.monotonic()
    count, first, last, lone = 0, None, None, 0
    publisher = JetStreamPublisher(nats_url, name="ssmd-replay") if acked else None
    core = None if acked else await nats.connect(**as_settings(nats_url).nats_py_options(), name="ssmd-replay",
                                                 connect_timeout=5)
    try:
        if publisher is not None:
            await publisher.start()
        for message in iter_messages(data, selection):
            if message.lone_chunk is not None:
                lone += 1
                continue
            wait = pacer.delay(message.ts_ns)
            if wait >= MIN_SLEEP_S:
                await asyncio.sleep(wait)  # pacing is the point here: the original spacing
            subject = rewrite_subject(message.subject, prefix)
            headers = replay_headers(message, msg_id_prefix)
            if publisher is not None:
                await publisher.publish(subject, message.frame, header_block(headers))
            else:
                assert core is not None
                await core.publish(subject, message.frame, headers=headers)
            count += 1
            first = message.seq if first is None else first
            last = message.seq
        if publisher is not None and not await publisher.drain(drain_timeout_s):
            raise ReplayError(f"{publisher.in_flight} of {count} replayed messages not acknowledged after "
                              f"{drain_timeout_s}s (is there a stream for {prefix}.>?)")
        if core is not None:
            await core.flush(timeout=int(drain_timeout_s))
    finally:
        if publisher is not None:
            await publisher.close()
        if core is not None:
            await core.close()
    result = ReplayResult(count, first, last, time.monotonic() - started, lone)
    if lone:
        log.warning("chunks of frames that could not be rebuilt were not replayed", file=data.name, chunks=lone)
    log.info("partition replayed", file=data.name, prefix=prefix, published=count,
             duration_s=round(result.duration_s, 3), speed=speed or "max")
    return result
