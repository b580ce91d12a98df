"""Read exactly the messages of a time window from a JetStream stream, in sequence order.

A window scan creates an ephemeral push consumer that starts at the first message whose JetStream
timestamp is at or after the window start (``deliver_policy: by_start_time``), with no acks, flow
control and idle heartbeats, and walks forward until the first message at or past the window end,
or the end of the stream. JetStream assigns timestamps in sequence order, which is what makes
"start by time, stop at the first message past the window" exact. The consumer is deleted when the
scan ends (and expires on the server by itself if this process dies).

Why a push consumer and not batched direct get: the server delivers a consumer's messages with
their stream sequence and timestamp in the reply subject (``$JS.ACK.….<sseq>.<cseq>.<ts ns>.
<pending>``), so neither side formats or parses per-message headers. Measured on 2 cores, 1M
messages: ~2.3 µs of nats-server CPU per message against ~10 µs for direct get (which builds six
headers per message), and ~260k msgs/s read against ~90k. Direct get is still used for small
lookups (:meth:`StreamReader.held_in_range`).

The stream's last sequence is read *before* the scan; the caller fixes the window end before that
(for an open day: "now"), so every message with a timestamp inside the window has been stored
already and the scan cannot miss one that is still being written.

Records are tuples ``(seq, ts_ns, subject, recv_ns, payload, msg_id)`` (``subject``, ``recv_ns``
and ``msg_id`` raw bytes; ``recv_ns`` / ``msg_id`` are None without an ``Ssmd-Received-Ns`` /
``Nats-Msg-Id`` header) handed out in lists, because one object per message would cost more than
the rest of the archive pipeline. A chunk of a frame larger than ``max_payload``
(``ingest_daemons.frame_chunks``: its ``Ssmd-Chunk`` header comes first) is a record like any
other; its header value goes into :attr:`WindowScan.chunks`, keyed by seq, for ``archive.reassembly``.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import orjson

from ingest_daemons.archive import _deliveries
from ingest_daemons.archive.errors import ArchiveConnectionLost, ArchiveReadError, StreamNotFound
from ingest_daemons.archive.layout import TimeWindow, format_ns, to_ns
from ingest_daemons.archive.nats_wire import Frame, NatsWireClient
from ingest_daemons.frame_chunks import HEADER_PREFIX as _CHUNK_PREFIX
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.archive.reader")

Record = tuple[int, int, bytes, bytes | None, bytes, bytes | None]
StopReason = Literal["window_end", "stream_end"]

DEFAULT_HEARTBEAT_S = 2.0  # an idle consumer says so this often: ends a scan whose tail was deleted
DEFAULT_INACTIVE_S = 60.0  # the server deletes a consumer whose reader vanished after this long
DEFAULT_MAX_RESETS = 3  # re-creations after a skipped delivery (should never happen without acks)
# After a lost connection, how long a scan keeps reconnecting and re-creating its consumer (a killed
# stream leader is replaced within seconds; until then the stream's API does not answer).
DEFAULT_RECOVERY_S = 60.0
DEFAULT_LOOKUP_BATCH = 10_000
DEFAULT_LOOKUP_BYTES = 8 << 20
_NS = 1_000_000_000
_HDR_SEQ = b"\r\nNats-Sequence: "
_HDR_TS = b"\r\nNats-Time-Stamp: "
_HDR_SUBJECT = b"\r\nNats-Subject: "
_HDR_PENDING = b"\r\nNats-Num-Pending: "
_HDR_LAST_CONSUMER = b"\r\nNats-Last-Consumer: "
_HDR_STALLED = b"\r\nNats-Consumer-Stalled: "
_HDR_RECEIVED = b"\r\nSsmd-Received-Ns: "
_HDR_MSG_ID = b"\r\nNats-Msg-Id: "

# The plain deliveries of WindowScan._raw_batch, parsed in C (_deliveries.c): the Python loop costs
# ~42,000 instructions a message. None runs the Python loop alone (the reference the C code is tested
# against); with it, the loop handles only the frames the C code stops at.
PlainDeliveries = Callable[[bytes, int, bytes, bytes | None, int, int, list[Record]], tuple[int, int, int | None, int]]
_plain_deliveries: PlainDeliveries | None = _deliveries.plain_deliveries


def _header_fields(headers: bytes) -> tuple[bytes | None, bytes | None, bytes | None]:
    """``(msg id, received ns, chunk header)`` of one message's header block, each None when absent.

    The connector writes "Nats-Msg-Id: …\\r\\nSsmd-Received-Ns: …", so one search usually finds both.
    """
    msg_id: bytes | None = None
    start = headers.find(_HDR_MSG_ID)
    if start >= 0:
        start += 15
        cut = headers.find(b"\r", start)
        msg_id = headers[start:cut]
        if headers.startswith(_HDR_RECEIVED, cut):
            start = cut + 20
        else:
            start = headers.find(_HDR_RECEIVED)
            start = start + 20 if start >= 0 else -1
    else:
        start = headers.find(_HDR_RECEIVED)
        start = start + 20 if start >= 0 else -1
    recv = headers[start : headers.find(b"\r", start)] if start >= 0 else None
    chunk = (headers[len(_CHUNK_PREFIX) : headers.find(b"\r", len(_CHUNK_PREFIX))]
             if headers.startswith(_CHUNK_PREFIX) else None)
    return msg_id, recv, chunk


_FRACTION_SCALE = tuple(10 ** (9 - n) for n in range(10))
_second_base: dict[bytes, int] = {}
_SECOND_CACHE_LIMIT = 100_000


def parse_timestamp_ns(text: bytes) -> int:
    """``2026-03-01T12:00:00.123456789Z`` → Unix ns, exactly (the server trims trailing zeros).

    Fast path for the server's UTC form, caching the whole-second prefix (consecutive messages
    share it); anything else goes through :func:`_parse_timestamp_slow`.
    """
    if text[-1:] != b"Z":
        return _parse_timestamp_slow(text.decode())
    base = _second_base.get(text[:19])
    if base is None:
        if len(text) < 20 or text[10] != 84 or text[19] not in (46, 90) or len(text) > 30:  # T . Z
            return _parse_timestamp_slow(text.decode())
        if len(_second_base) >= _SECOND_CACHE_LIMIT:
            _second_base.clear()
        moment = datetime.strptime(text[:19].decode(), "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC)
        base = _second_base[text[:19]] = to_ns(moment)
    frac = text[20:-1]
    return base + int(frac) * _FRACTION_SCALE[len(frac)] if frac else base


def _parse_timestamp_slow(text: str) -> int:
    main, frac, offset = text, "", ""
    if "." in text:
        main, rest = text.split(".", 1)
        digits = len(rest) - len(rest.lstrip("0123456789"))
        frac, offset = rest[:digits], rest[digits:]
    else:
        for sign in ("Z", "+", "-"):
            idx = text.rfind(sign)
            if idx > 10:
                main, offset = text[:idx], text[idx:]
                break
    moment = datetime.fromisoformat(main + (offset.replace("Z", "+00:00") or "+00:00"))
    return to_ns(moment) + (int(frac[:9].ljust(9, "0")) if frac else 0)


# The server appends "Nats-Stream, Nats-Subject, Nats-Sequence, Nats-Time-Stamp, ..." after the
# publisher's headers; one regex search picks the three we need (faster than three finds).
_SERVER_FIELDS = re.compile(rb"\r\nNats-Subject: ([^\r]*)\r\nNats-Sequence: (\d+)\r\nNats-Time-Stamp: ([^\r]*)\r\n")
_RECEIVED = re.compile(rb"\r\nSsmd-Received-Ns: ([^\r]*)\r\n")


def _message_fields(headers: bytes) -> tuple[int, bytes, bytes, bytes | None]:
    """``(seq, timestamp text, subject, Ssmd-Received-Ns or None)`` of a direct-get response."""
    match = _SERVER_FIELDS.search(headers)
    if match is None:
        seq = int(_header(headers, _HDR_SEQ) or b"-1")
        ts = _header(headers, _HDR_TS) or b""
        subject = _header(headers, _HDR_SUBJECT) or b""
        if seq < 0 or not ts:
            raise ArchiveReadError(f"direct-get response without sequence or timestamp: {headers[:200]!r}")
        received = _RECEIVED.search(headers)
    else:
        subject, seq_text, ts = match.groups()
        seq = int(seq_text)
        received = _RECEIVED.search(headers, 0, match.start() + 2)
    return seq, ts, subject, received.group(1) if received is not None else None


def _header(headers: bytes, name: bytes) -> bytes | None:
    """Value of the *last* header called ``name`` (the server appends its own after the publisher's)."""
    start = headers.rfind(name)
    if start < 0:
        return None
    start += len(name)
    return headers[start : headers.find(b"\r", start)]


@dataclass(frozen=True)
class StreamState:
    name: str
    messages: int
    first_seq: int
    last_seq: int
    first_ts_ns: int | None
    last_ts_ns: int | None
    max_age_ns: int
    allow_direct: bool
    bytes: int = 0
    max_bytes: int = -1  # -1: no limit (JetStream's convention, as in the environment YAML)
    max_msgs: int = -1
    discard: str = "old"  # "old": limits remove the oldest messages; "new": they refuse new ones

    @classmethod
    def from_info(cls, info: dict[str, Any]) -> StreamState:
        config, state = info.get("config", {}), info.get("state", {})

        def ts(key: str) -> int | None:
            value = state.get(key)
            if not value or value.startswith("0001-01-01"):
                return None
            return parse_timestamp_ns(value.encode())

        return cls(
            name=str(config.get("name", "")),
            messages=int(state.get("messages", 0)),
            first_seq=int(state.get("first_seq", 0)),
            last_seq=int(state.get("last_seq", 0)),
            first_ts_ns=ts("first_ts"),
            last_ts_ns=ts("last_ts"),
            max_age_ns=int(config.get("max_age", 0)),
            allow_direct=bool(config.get("allow_direct", False)),
            bytes=int(state.get("bytes", 0)),
            max_bytes=int(config.get("max_bytes", -1)),
            max_msgs=int(config.get("max_msgs", -1)),
            discard=str(config.get("discard", "old")),
        )


class StreamReader:
    """Reads one stream through a connected :class:`NatsWireClient`."""

    def __init__(
        self,
        client: NatsWireClient,
        stream: str,
        *,
        heartbeat_s: float = DEFAULT_HEARTBEAT_S,
        inactive_s: float = DEFAULT_INACTIVE_S,
        max_resets: int = DEFAULT_MAX_RESETS,
        recovery_s: float = DEFAULT_RECOVERY_S,
    ) -> None:
        self.client = client
        self.stream = stream
        self.heartbeat_s = heartbeat_s
        self.inactive_s = inactive_s
        self.max_resets = max_resets
        self.recovery_s = recovery_s
        self._api = client.api_prefix

    def state(self) -> StreamState:
        info = self.client.api_request(f"{self._api}.STREAM.INFO.{self.stream}")
        error = info.get("error")
        if error:
            if error.get("code") == 404:
                raise StreamNotFound(f"stream {self.stream} does not exist (run `ssmd streams apply`?)")
            raise ArchiveReadError(f"stream info for {self.stream}: {error.get('description', error)}")
        return StreamState.from_info(info)

    def scan(self, window: TimeWindow) -> WindowScan:
        return WindowScan(self, window)

    # ------------------------------------------------------------------ consumers

    def scan_after(self, seq: int, until_ns: int, subjects: list[bytes]) -> WindowScan:
        """Messages on ``subjects`` from ``seq`` on, up to the first stored at or after ``until_ns``
        (the look-ahead that finishes chunked frames open at a window's end)."""
        return WindowScan(self, TimeWindow(0, until_ns), start_seq=seq,
                          subjects=[s.decode("utf-8", "replace") for s in subjects])

    def open_consumer(self, start: dict[str, Any]) -> tuple[str, bytes, int]:
        """Create an ephemeral push consumer from ``start`` (deliver policy fields).

        Returns ``(consumer name, subscription id, messages pending)``. The subscription exists
        before the consumer, so no delivery can arrive unheard.
        """
        deliver = f"_INBOX.ssmdarc.push.{secrets.token_hex(8)}"
        sid = self.client.subscribe(deliver)
        config = {
            "description": f"ssmd archive reader ({self.client.name})",
            **start,
            "ack_policy": "none",
            "replay_policy": "instant",
            "deliver_subject": deliver,
            "flow_control": True,
            "idle_heartbeat": int(self.heartbeat_s * _NS),
            "inactive_threshold": int(self.inactive_s * _NS),
            "mem_storage": True,
            "num_replicas": 1,
        }
        reply = self.client.api_request(
            f"{self._api}.CONSUMER.CREATE.{self.stream}", {"stream_name": self.stream, "config": config}
        )
        error = reply.get("error")
        if error:
            self.client.unsubscribe(sid)
            if error.get("code") == 404:
                raise StreamNotFound(f"stream {self.stream} does not exist (run `ssmd streams apply`?)")
            raise ArchiveReadError(f"cannot create a consumer on {self.stream}: {error.get('description', error)}")
        return str(reply["name"]), sid, int(reply.get("num_pending", 0))

    def close_consumer(self, name: str, sid: bytes) -> None:
        """Stop deliveries and delete the consumer (best effort: it also expires on its own)."""
        try:
            self.client.unsubscribe(sid)
            self.client.api_request(f"{self._api}.CONSUMER.DELETE.{self.stream}.{name}")
        except ArchiveReadError as exc:
            log.warning("consumer not deleted; it expires by itself", stream=self.stream, consumer=name,
                        error=str(exc))

    # ------------------------------------------------------------------ direct get (small lookups)

    def first_at_or_after(self, *, seq: int | None = None, time_ns: int | None = None) -> tuple[int, int] | None:
        """``(seq, timestamp ns)`` of the first message held at or after ``seq`` or ``time_ns``
        (one direct get; None when there is none)."""
        body: dict[str, Any] = {"batch": 1}
        if time_ns is not None:
            body["start_time"] = format_ns(time_ns)
        else:
            body["seq"] = max(1, seq or 1)
        reply = self.client.send_request(f"{self._api}.DIRECT.GET.{self.stream}", orjson.dumps(body))
        found: tuple[int, int] | None = None
        for _, _, _, headers, _ in self.client.frames_for(reply):
            if headers is None:
                continue
            if headers[8:9] == b" ":  # status line: "NATS/1.0 204 EOB" ends the batch, 404 = none
                status = headers[9:12]
                if status == b"503":
                    raise ArchiveReadError(f"no direct-get responder for {self.stream}: allow_direct is off")
                if status not in (b"204", b"404"):
                    line = headers.split(b"\r", 1)[0].decode("utf-8", "replace")
                    raise ArchiveReadError(f"direct get on {self.stream}: {line}")
                break
            got, ts, _, _ = _message_fields(headers)
            found = (got, parse_timestamp_ns(ts))
        return found

    def held_in_range(self, first: int, last: int) -> int:
        """How many of the sequences ``first..last`` the stream still holds (for hole reports).

        Counts by reading the range with batched direct get, after clipping it to what the stream
        holds at all (a range that aged out costs one stream-info request).
        """
        state = self.state()
        first, last = max(first, state.first_seq), min(last, state.last_seq)
        held, seq = 0, first
        subject = f"{self._api}.DIRECT.GET.{self.stream}"
        while seq <= last:
            body = {"seq": seq, "batch": min(DEFAULT_LOOKUP_BATCH, last - seq + 1), "max_bytes": DEFAULT_LOOKUP_BYTES}
            reply = self.client.send_request(subject, orjson.dumps(body))
            status, pending = b"", 0
            for _, _, _, headers, _ in self.client.frames_for(reply):
                if headers is None:
                    continue
                if headers[8:9] == b" ":  # status line: "NATS/1.0 204 EOB", "NATS/1.0 404 ..."
                    status = headers[9:12]
                    if status == b"503":
                        raise ArchiveReadError(f"no direct-get responder for {self.stream}: allow_direct is off")
                    if status not in (b"204", b"404"):
                        line = headers.split(b"\r", 1)[0].decode("utf-8", "replace")
                        raise ArchiveReadError(f"direct get on {self.stream}: {line}")
                    pending = int(_header(headers, _HDR_PENDING) or b"0")
                    break
                got = _message_fields(headers)[0]
                held += got <= last
                seq = got + 1
            if status == b"404" or pending == 0:
                break
        return held


def _ack_fields(reply: bytes) -> tuple[int, int, int, int]:
    """``(stream seq, consumer seq, timestamp ns, pending)`` from a delivery's reply subject.

    ``$JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>`` (9 tokens), or the
    newer ``$JS.ACK.<domain>.<account>.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    [.<token>]`` (11 or 12 tokens).
    """
    tokens = reply.split(b".")
    base = 5 if len(tokens) == 9 else 7
    try:
        return int(tokens[base]), int(tokens[base + 1]), int(tokens[base + 2]), int(tokens[base + 3])
    except (IndexError, ValueError):
        raise ArchiveReadError(f"unexpected JetStream delivery reply subject {reply[:120]!r}") from None


class WindowScan:
    """Iterate once over lists of :data:`Record`; afterwards ``next_seq`` and ``stopped_by`` are set.

    ``next_seq`` is the first sequence after the window: the message that ended the scan, or the
    stream's last sequence + 1. The next window's scan starts there unless messages were removed.
    """

    def __init__(self, reader: StreamReader, window: TimeWindow, start_seq: int | None = None,
                 subjects: list[str] | None = None) -> None:
        self.reader = reader
        self.window = window
        self.start_seq = start_seq
        self.subjects = subjects
        self.chunks: dict[int, bytes] = {}  # seq -> Ssmd-Chunk value, for the consumer to take
        self.stream_state: StreamState | None = None
        self.next_seq: int | None = None
        self.stopped_by: StopReason | None = None
        self.resets = 0
        self.reconnects = 0  # connections lost mid-scan and made again

    def _finish(self, next_seq: int, reason: StopReason) -> None:
        self.next_seq, self.stopped_by = next_seq, reason

    def __iter__(self) -> Iterator[list[Record]]:
        reader = self.reader
        state = self.stream_state = reader.state()
        if state.messages == 0:
            self._finish(state.last_seq + 1, "stream_end")
            return
        last_seen: int | None = None
        recovering_until: float | None = None  # set while reconnecting after a lost connection
        while True:
            start: dict[str, Any]
            if last_seen is not None or self.start_seq is not None:
                first = last_seen + 1 if last_seen is not None else self.start_seq
                start = {"deliver_policy": "by_start_sequence", "opt_start_seq": first}
            else:
                start = {"deliver_policy": "by_start_time", "opt_start_time": format_ns(self.window.start_ns)}
            if self.subjects:
                start["filter_subjects"] = self.subjects
            try:
                name, sid, pending = reader.open_consumer(start)
            except ArchiveReadError as exc:
                # While a new stream leader is elected the API times out or refuses: keep trying.
                if recovering_until is None or isinstance(exc, StreamNotFound):
                    raise
                recovering_until = self._recover(exc, recovering_until, last_seen)
                continue
            lost: ArchiveConnectionLost | None = None
            try:
                if pending == 0:
                    self._finish(max((last_seen or 0) + 1, state.last_seq + 1), "stream_end")
                    return
                for batch in self._deliveries(sid, state):
                    last_seen = batch[-1][0]
                    yield batch
                if self.next_seq is not None:
                    return
            except ArchiveConnectionLost as exc:
                lost = exc
            finally:
                if lost is None:  # a consumer behind a lost connection expires by itself (inactive_s)
                    reader.close_consumer(name, sid)
            if lost is not None:
                # Its server died or left (a stream leader killed, a rolling restart). What was
                # delivered is kept; a new consumer starts after the last message received.
                recovering_until = self._recover(lost, recovering_until, last_seen)
                continue
            recovering_until = None
            self.resets += 1
            if self.resets > reader.max_resets:
                raise ArchiveReadError(f"{reader.stream}: deliveries kept skipping messages; gave up")
            log.warning("consumer skipped a delivery; re-creating it", stream=reader.stream, after_seq=last_seen)

    def _recover(self, exc: ArchiveReadError, until: float | None, last_seen: int | None) -> float:
        """Reconnect after ``exc`` (to the next server first); returns the recovery deadline, which
        ``exc`` ends the scan once past."""
        now = time.monotonic()
        until = until if until is not None else now + self.reader.recovery_s
        if now > until:
            raise ArchiveReadError(f"{self.reader.stream}: NATS lost mid-scan and not back within "
                                   f"{self.reader.recovery_s:g}s: {exc}") from exc
        log.warning("NATS connection lost mid-scan; reconnecting", stream=self.reader.stream,
                    after_seq=last_seen, error=str(exc))
        try:
            self.reader.client.reconnect(max(0.0, until - now))
        except ArchiveReadError as again:
            raise ArchiveReadError(f"{self.reader.stream}: NATS lost mid-scan and not back within "
                                   f"{self.reader.recovery_s:g}s: {again}") from exc
        self.reconnects += 1
        log.info("reconnected mid-scan", stream=self.reader.stream, url=self.reader.client.connected_url,
                 after_seq=last_seen)
        return until

    def _deliveries(self, sid: bytes, state: StreamState) -> Iterator[list[Record]]:
        """Batches from one consumer; returns with ``next_seq`` set, or without it to ask for a reset.

        The hot loop of the archive (and the benchmark's read ceiling). With a
        :class:`NatsWireClient`, each network read is parsed here straight into records
        (:meth:`_raw_batch`); whatever that does not handle — anything but a data frame or a
        flow-control request, a reply subject of another form — goes through the client's frame
        parser and :meth:`_frame_batch`, which handle every case (and are what the protocol tests
        script). Both apply the same rules in the same order.
        """
        client = self.reader.client
        raw = isinstance(client, NatsWireClient)
        frame_lists = client.frame_lists()
        state_box = _DeliveryState()
        while True:
            if raw and not client.has_unread:
                batch, general = self._raw_batch(client.take_raw(), sid, state, state_box)
                if batch:
                    yield batch
                if self.next_seq is not None or state_box.reset:
                    return
                if not general:
                    continue
            batch = self._frame_batch(next(frame_lists), sid, state, state_box)
            if batch:
                yield batch
            if self.next_seq is not None or state_box.reset:
                return

    def _raw_batch(self, data: bytes, sid: bytes, state: StreamState, box: _DeliveryState) -> tuple[list[Record], bool]:
        """Records from the data frames at the start of ``data``; the rest goes back to the client.

        Returns ``(records, general)``: ``general`` asks the caller to run the frame parser on what
        is left (it starts with something other than a data frame or a flow-control request).
        """
        client = self.reader.client
        end_ns = self.window.end_ns
        chunks = self.chunks
        expected, ack_prefix = box.expected, box.ack_prefix
        batch: list[Record] = []
        append = batch.append
        pos = 0
        size = len(data)
        general = False
        plain = _plain_deliveries
        try:
            while True:
                if plain is not None:  # what the C code parses; the code below handles where it stops
                    pos, expected, last_seq, _ = plain(data, pos, sid, ack_prefix, expected, end_ns, batch)
                    if last_seq is not None:
                        box.last_seq = last_seq
                end = data.find(b"\r\n", pos)
                if end < 0:
                    break
                if data[pos] != 72:  # not HMSG: PING, INFO, -ERR, MSG ... for the frame parser
                    general = True
                    break
                parts = data[pos + 5 : end].split(b" ")
                if len(parts) != 5:  # no reply subject: an idle heartbeat (or not ours)
                    general = True
                    break
                subject, frame_sid, reply, hlen, total = parts
                body = end + 2
                stop = body + int(total)
                if size < stop + 2:
                    break  # partial: more to read
                next_pos = stop + 2
                if frame_sid != sid:
                    pos = next_pos
                    continue
                hend = body + int(hlen)
                headers = data[body:hend]
                if headers[8:9] == b" ":  # "NATS/1.0 100 ..." with a reply: a flow-control request
                    client.publish(reply)
                    pos = next_pos
                    continue
                prefix, seq_text, cseq_text, ts_text, pending_text = reply.rsplit(b".", 4)
                if prefix != ack_prefix:
                    if ack_prefix is None and prefix.count(b".") == 4:  # $JS.ACK.<stream>.<consumer>.<delivered>
                        ack_prefix = box.ack_prefix = prefix
                    else:
                        general = True  # another reply form: _ack_fields reads it
                        break
                seq, ts, pending = int(seq_text), int(ts_text), int(pending_text)  # may raise: nothing done yet
                if int(cseq_text) != expected:  # a skipped delivery: re-create from the last good message
                    box.reset = True
                    break
                expected += 1
                if ts >= end_ns:
                    pos = next_pos
                    self._finish(seq, "window_end")
                    break
                msg_id, recv, chunk = _header_fields(headers)
                if chunk is not None:
                    chunks[seq] = chunk
                append((seq, ts, subject, recv, data[hend:stop], msg_id))
                box.last_seq = seq
                pos = next_pos
                if pending == 0:
                    self._finish(max(seq + 1, state.last_seq + 1), "stream_end")  # the last message held
                    break
        except ValueError:  # a reply subject or length that is not what it should be: the frame parser says
            general = True
        box.expected = expected
        client.keep_raw(data[pos:] if pos else data)
        return batch, general

    def _frame_batch(self, frames: list[Frame], sid: bytes, state: StreamState, box: _DeliveryState) -> list[Record]:
        """Records from one list of parsed frames (every case: control messages, reply forms)."""
        client, end_ns = self.reader.client, self.window.end_ns
        chunks = self.chunks
        expected = box.expected
        batch: list[Record] = []
        try:
            for index, (frame_sid, subject, reply, headers, payload) in enumerate(frames):
                if frame_sid != sid:
                    continue
                if headers is not None and headers[8:9] == b" ":  # "NATS/1.0 100 ..." control message
                    if reply is not None:  # flow control request: answer to keep deliveries coming
                        client.publish(reply)
                        continue
                    stalled = _header(headers, _HDR_STALLED)
                    if stalled:  # waiting for a flow-control answer that got lost: answer, carry on
                        client.publish(stalled)
                        continue
                    # Idle heartbeat from a consumer that is not stalled: it has nothing more to
                    # deliver (messages counted as pending were removed). Done if we missed nothing.
                    delivered = int(_header(headers, _HDR_LAST_CONSUMER) or b"-1")
                    if delivered != expected - 1:
                        box.reset = True
                        return batch
                    client.push_back(frames[index + 1 :])
                    self._finish(max(box.last_seq + 1, state.last_seq + 1), "stream_end")
                    return batch
                # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending> (inline: hot path)
                tokens = reply.split(b".") if reply is not None else []
                if len(tokens) == 9:
                    seq, cseq, ts, pending = int(tokens[5]), int(tokens[6]), int(tokens[7]), int(tokens[8])
                else:
                    seq, cseq, ts, pending = _ack_fields(reply or b"")
                if cseq != expected:  # a skipped delivery: re-create from the last good message
                    box.reset = True
                    return batch
                expected += 1
                if ts >= end_ns:
                    client.push_back(frames[index + 1 :])
                    self._finish(seq, "window_end")
                    return batch
                recv: bytes | None = None
                msg_id: bytes | None = None
                if headers is not None:
                    msg_id, recv, chunk = _header_fields(headers)
                    if chunk is not None:
                        chunks[seq] = chunk
                batch.append((seq, ts, subject, recv, payload, msg_id))
                box.last_seq = seq
                if pending == 0:  # the last message the stream holds
                    client.push_back(frames[index + 1 :])
                    self._finish(max(seq + 1, state.last_seq + 1), "stream_end")
                    return batch
            return batch
        finally:
            box.expected = expected


@dataclass
class _DeliveryState:
    """What one consumer's delivery loop carries from one network read to the next."""

    expected: int = 1  # consumer sequence of the next delivery
    last_seq: int = 0
    ack_prefix: bytes | None = None  # "$JS.ACK.<stream>.<consumer>.<delivered>" of this consumer's replies
    reset: bool = False  # a delivery was skipped: re-create the consumer
