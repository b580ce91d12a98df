"""One archive line per message: a JSON envelope around the exchange frame, which stays byte-for-byte.

Line format (keys always in this order, one line per message, ``\\n``-terminated)::

    {"seq":41,"ts":1772323200123456789,"subject":"dev.kalshi.economics.json.ticker.KX%2E1",
     "recv_ns":1772323200120000000,"frame":{...exchange JSON, original bytes...}}

* ``seq``: JetStream stream sequence.
* ``ts``: JetStream timestamp, integer Unix nanoseconds (integers keep all nine digits and sort).
* ``subject``: the NATS subject (its 5th token is the message type, see ``ingest_daemons.naming``).
* ``recv_ns``: the connector's receive time from the ``Ssmd-Received-Ns`` header, integer Unix ns,
  or ``null`` when the message has no such header (or it is not an integer).
* ``chunk_seqs`` (only on a frame that was stored in chunks, see ``archive.reassembly``): every
  stream seq the frame was stored in, in chunk order; the line's ``seq`` is the first of them.
  ``chunk`` (only on a chunk that could not be made part of a whole frame): its ``Ssmd-Chunk``
  header, and the frame key holds that chunk's bytes alone.
* Exactly one of, always the last key:

  - ``frame``: the payload itself, spliced in unparsed, when it is valid JSON (by ``orjson.loads``'
    verdict; the archive loop reaches the same verdict without building objects, see
    ``ingest_daemons.json_check``), contains no CR or LF byte (which would split the line) and nests
    fewer than orjson's 1,024 levels (the envelope adds one: the line must stay readable). Kraken's book
    checksum depends on the decimal text (``0.00005100``); re-serialising would change it.
  - ``frame_text``: the payload as a JSON string, when it is UTF-8 but not embeddable JSON.
  - ``frame_b64``: the payload base64-encoded, when it is not UTF-8.

:func:`raw_frame` recovers the exact payload bytes from a line in all three cases.
"""

from __future__ import annotations

import base64
from typing import Final

import orjson

from ingest_daemons.json_check import too_deep_for_a_line

FRAME: Final = "frame"
FRAME_TEXT: Final = "frame_text"
FRAME_B64: Final = "frame_b64"
FRAME_KEYS: Final = (FRAME, FRAME_TEXT, FRAME_B64)

_FRAME_MARK = b',"frame":'
_loads = orjson.loads
_dumps = orjson.dumps
_JSONDecodeError = orjson.JSONDecodeError


def subject_json(subject: bytes) -> bytes:
    """The subject as a JSON string (callers cache it: subjects repeat per market)."""
    return _dumps(subject.decode("utf-8", "backslashreplace"))


def recv_json(recv_ns: bytes | None) -> bytes:
    """``Ssmd-Received-Ns`` as a JSON number, or ``null`` when absent or not a plain integer."""
    if recv_ns is None or not recv_ns.isdigit() or len(recv_ns) > 20:
        return b"null"
    return recv_ns.lstrip(b"0") or b"0"


def frame_kind(payload: bytes) -> str:
    """Which of ``frame`` / ``frame_text`` / ``frame_b64`` keeps ``payload`` losslessly."""
    if b"\n" not in payload and b"\r" not in payload and not too_deep_for_a_line(payload):
        try:
            _loads(payload)
            return FRAME
        except _JSONDecodeError:
            pass
    try:
        payload.decode("utf-8")
        return FRAME_TEXT
    except UnicodeDecodeError:
        return FRAME_B64


def encode_line(
    seq: int, ts_ns: int, subject: bytes, recv: bytes, payload: bytes, extra: bytes = b""
) -> tuple[bytes, str]:
    """One archive line and the frame key used. ``subject`` and ``recv`` are already JSON text;
    ``extra`` is envelope text put just before the frame key (``"chunk_seqs":[…],``).

    The hot path of the archiver inlines the ``frame`` case; this function is the reference.
    """
    head = b'{"seq":%d,"ts":%d,"subject":%s,"recv_ns":%s,%s' % (seq, ts_ns, subject, recv, extra)
    kind = frame_kind(payload)
    if kind == FRAME:
        return head + b'"frame":' + payload + b"}\n", kind
    if kind == FRAME_TEXT:
        return head + b'"frame_text":' + _dumps(payload.decode("utf-8")) + b"}\n", kind
    return head + b'"frame_b64":"' + base64.b64encode(payload) + b'"}\n', kind


def encode_fallback(seq: int, ts_ns: int, subject: bytes, recv: bytes, payload: bytes) -> tuple[bytes, str]:
    """Line for a payload the fast path could not embed as ``frame`` (text or base64)."""
    head = b'{"seq":%d,"ts":%d,"subject":%s,"recv_ns":%s,' % (seq, ts_ns, subject, recv)
    try:
        text = payload.decode("utf-8")
    except UnicodeDecodeError:
        return head + b'"frame_b64":"' + base64.b64encode(payload) + b'"}\n', FRAME_B64
    return head + b'"frame_text":' + _dumps(text) + b"}\n", FRAME_TEXT


def raw_frame(line: bytes) -> bytes:
    """The original payload bytes of an archive line (the inverse of :func:`encode_line`)."""
    body = line.rstrip(b"\n")
    record = _loads(body)
    if FRAME in record:
        # `,"frame":` cannot occur earlier: the keys before it are numbers, lists of numbers and
        # JSON strings, in which every quote is escaped.
        start = body.index(_FRAME_MARK) + len(_FRAME_MARK)
        return body[start:-1]
    if FRAME_TEXT in record:
        return str(record[FRAME_TEXT]).encode("utf-8")
    if FRAME_B64 in record:
        return base64.b64decode(record[FRAME_B64], validate=True)
    raise ValueError("not an archive line: no frame, frame_text or frame_b64 key")
