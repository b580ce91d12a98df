"""Many reads or writes of one KV bucket in one round trip, whatever their number.

Why: the shard assigner turns a burst of a thousand new markets into a read, a claim and a
membership write per market. Through nats-py's ``KeyValue`` each is a request/reply of its own with
its own future and timer, so a burst cost three thousand requests and every sequential step of the
assignment waited for the slowest of them. Here:

* **Reads** use JetStream's batched direct get (``multi_last``, nats-server 2.11+; the bucket's
  stream needs ``allow_direct``, which :func:`allow_direct_get` switches on): one request answers
  the latest message of up to :data:`MULTI_LAST_MAX` subjects, streamed back and ended by an EOB
  status. A key that never existed costs nothing on the wire; a removed key comes back as its purge
  or delete marker (``deleted``), whose revision a create-after-delete needs.
* **Writes** are ordinary JetStream publishes (a compare-and-set carries
  ``Nats-Expected-Last-Subject-Sequence``): all of them go out at once, each with its own reply
  subject under one inbox, and the answers — the stream's ack, or its error such as "wrong last
  sequence" — are matched by token. Every write gets its own outcome; nothing is retried here,
  because re-sending a compare-and-set that may already have landed would report a conflict with
  itself. A write left unanswered at the deadline raises :class:`TimeoutError` (the caller's
  redelivery repairs it, as with any lost reply).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from dataclasses import dataclass

import orjson
from nats.aio.client import Client
from nats.aio.msg import Msg
from nats.errors import Error as NatsError
from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from ingest_daemons.kv_scan import KeyRecord, is_delete_marker
from ingest_daemons.logs import get_logger

log = get_logger("ssmd.kv_batch")

MULTI_LAST_MAX = 1024  # the server refuses a batched get with more results ("413 Too Many Results")
DEFAULT_TIMEOUT_S = 10.0
EXPECTED_LAST_SUBJECT_SEQUENCE = "Nats-Expected-Last-Subject-Sequence"


class BatchGetError(Exception):
    """The server refused a batched get (a status other than end-of-batch or no-results)."""


class DirectGetUnavailable(Exception):
    """Nobody answers direct gets on the stream (``allow_direct`` is off)."""


@dataclass(frozen=True)
class KvWrite:
    """One publish into the bucket's stream: ``subject`` is the full ``$KV.<bucket>.<key>``."""

    subject: str
    payload: bytes
    headers: dict[str, str] | None = None


@dataclass(frozen=True)
class WriteOutcome:
    """The stream's answer to one write: its sequence (the key's new revision), or its error."""

    seq: int | None
    err_code: int | None = None
    description: str = ""

    @property
    def ok(self) -> bool:
        return self.seq is not None


def compare_and_set(subject: str, payload: bytes, last: int, extra: dict[str, str] | None = None) -> KvWrite:
    """A write that lands only if the key's latest revision is still ``last`` (0: the key has no message)."""
    return KvWrite(subject, payload, {**(extra or {}), EXPECTED_LAST_SUBJECT_SEQUENCE: str(last)})


async def allow_direct_get(js: JetStreamContext, stream: str, switch_on: bool = True) -> bool:
    """Whether the stream answers direct gets, after switching them on for a bucket created without
    them (they can be switched on at any time) when ``switch_on``.

    False when they are off and stay off: ``switch_on`` False (a role without stream administration,
    whose update the server would refuse only by letting the request time out), or the update was
    refused. Reads then go one request per key (``last_messages(..., direct=False)``) until
    provisioning switches them on.
    """
    info = await js.stream_info(stream)
    if info.config.allow_direct:
        return True
    if not switch_on:
        log.info("direct gets are off on this bucket; KV reads go one request per key until provisioning "
                 "switches them on", stream=stream)
        return False
    info.config.allow_direct = True
    try:
        await js.update_stream(info.config)
    except (NatsError, TimeoutError) as exc:
        log.warning("direct gets could not be switched on; KV reads go one request per key", stream=stream,
                    error=type(exc).__name__)
        return False
    return True


async def last_messages(nc: Client, stream: str, subjects: Sequence[str],
                        timeout_s: float = DEFAULT_TIMEOUT_S, direct: bool = True) -> dict[str, KeyRecord]:
    """subject → its latest message, for every subject of ``subjects`` that holds one (literal subjects).

    One request per :data:`MULTI_LAST_MAX` subjects, all in flight together; one per subject when
    ``direct`` is False (the stream does not allow direct gets, :func:`allow_direct_get`), and when
    the server answers that nobody serves them.
    """
    unique = list(dict.fromkeys(subjects))
    if not direct:
        return await _last_one_by_one(nc, stream, unique, timeout_s)
    chunks = [unique[i : i + MULTI_LAST_MAX] for i in range(0, len(unique), MULTI_LAST_MAX)]
    found: dict[str, KeyRecord] = {}
    try:
        parts = await asyncio.gather(*(_last_of_chunk(nc, stream, chunk, timeout_s) for chunk in chunks))
    except DirectGetUnavailable:
        parts = [await _last_one_by_one(nc, stream, unique, timeout_s)]
    for part in parts:
        found.update(part)
    return found


async def _last_one_by_one(nc: Client, stream: str, subjects: list[str], timeout_s: float) -> dict[str, KeyRecord]:
    """The same answer from the stream's leader, one request per subject (all in flight together)."""
    js = nc.jetstream(timeout=timeout_s)

    async def one(subject: str) -> KeyRecord | None:
        try:
            msg = await js.get_msg(stream, subject=subject, direct=False)
        except NotFoundError:
            return None
        return KeyRecord(subject, msg.data or b"", is_delete_marker(msg.headers), int(msg.seq or 0))

    records = await asyncio.gather(*(one(subject) for subject in subjects))
    return {record.subject: record for record in records if record is not None}


async def _last_of_chunk(nc: Client, stream: str, subjects: list[str], timeout_s: float) -> dict[str, KeyRecord]:
    found: dict[str, KeyRecord] = {}
    done: asyncio.Future[str] = asyncio.get_running_loop().create_future()

    async def on_message(msg: Msg) -> None:
        headers = msg.headers or {}
        status = headers.get("Status")
        if status:
            if not done.done():
                done.set_result(f"{status} {headers.get('Description', '')}".strip())
            return
        subject = headers.get("Nats-Subject", "")
        found[subject] = KeyRecord(subject, msg.data, is_delete_marker(headers), int(headers.get("Nats-Sequence", 0)))

    inbox = nc.new_inbox()
    subscription = await nc.subscribe(inbox, cb=on_message, pending_msgs_limit=4 * MULTI_LAST_MAX,
                                      pending_bytes_limit=-1)
    try:
        request = {"multi_last": subjects, "batch": len(subjects)}
        await nc.publish(f"$JS.API.DIRECT.GET.{stream}", orjson.dumps(request), reply=inbox)
        try:
            status = await asyncio.wait_for(done, timeout_s)
        except TimeoutError:
            raise TimeoutError(f"batched get of {len(subjects)} keys from {stream}: "
                               f"no answer in {timeout_s} s") from None
        if status.startswith("503"):  # no responders: the stream does not allow direct gets
            raise DirectGetUnavailable(stream)
        if not (status.startswith("204") or status.startswith("404")):  # end of batch / none of them exists
            raise BatchGetError(f"batched get of {len(subjects)} keys from {stream} refused: {status}")
        return found
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


async def publish_all(nc: Client, writes: Sequence[KvWrite],
                      timeout_s: float = DEFAULT_TIMEOUT_S) -> list[WriteOutcome]:
    """Publish every write at once and return each one's outcome, in the order given."""
    if not writes:
        return []
    outcomes: list[WriteOutcome | None] = [None] * len(writes)
    remaining = len(writes)
    all_answered = asyncio.get_running_loop().create_future()
    inbox = nc.new_inbox()
    prefix = len(inbox) + 1

    async def on_answer(msg: Msg) -> None:
        nonlocal remaining
        try:
            index = int(msg.subject[prefix:])
        except ValueError:
            return
        if not 0 <= index < len(outcomes) or outcomes[index] is not None:
            return
        outcomes[index] = parse_ack(msg)
        remaining -= 1
        if not remaining and not all_answered.done():
            all_answered.set_result(None)

    subscription = await nc.subscribe(inbox + ".*", cb=on_answer, pending_msgs_limit=len(writes) + 16,
                                      pending_bytes_limit=-1)
    try:
        for index, write in enumerate(writes):
            await nc.publish(write.subject, write.payload, reply=f"{inbox}.{index}", headers=write.headers)
        try:
            await asyncio.wait_for(asyncio.shield(all_answered), timeout_s)
        except TimeoutError:
            raise TimeoutError(f"{remaining} of {len(writes)} KV writes unanswered after {timeout_s} s") from None
        return [outcome for outcome in outcomes if outcome is not None]
    finally:
        with contextlib.suppress(Exception):
            await subscription.unsubscribe()


def parse_ack(msg: Msg) -> WriteOutcome:
    """A JetStream publish answer: ``{"stream","seq"}``, ``{"error":{…}}``, or a no-responders status."""
    status = (msg.headers or {}).get("Status")
    if status:
        return WriteOutcome(None, None, f"status {status}")
    try:
        body = orjson.loads(msg.data)
    except orjson.JSONDecodeError:
        return WriteOutcome(None, None, "unreadable answer")
    error = body.get("error")
    if error:
        return WriteOutcome(None, error.get("err_code"), str(error.get("description", "")))
    return WriteOutcome(int(body["seq"]))
