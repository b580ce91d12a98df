"""The ``websockets`` library's sans-I/O parser behind :class:`~ingest_daemons.connector.ws_client.FrameParser`'s
interface: the reference the connector's own parser is checked against, and measured against.

Why the connector does not read through it: side by side in one benchmark run it cost far more than
the 10% of flood throughput the connector could give up (README, Benchmarks: the framing row) —
its frame parser is a generator that yields per header field and returns each payload as a
``bytearray``. So the own parser stays on the hot path and a differential test
(``tests/ingest_daemons/connector/test_ws_differential.py``) requires both to return the same
messages and the same close code on random streams, valid and invalid, cut at every point.

``websockets.client.ClientProtocol`` validates framing, control frames and close payloads but leaves
text messages undecoded (its asyncio layer decodes them); this adapter joins fragments and decodes
text incrementally with a strict UTF-8 decoder, as that layer does, and fails with 1007 on invalid UTF-8.
"""

from __future__ import annotations

import codecs

from websockets.client import ClientProtocol
from websockets.exceptions import PayloadTooBig
from websockets.frames import Frame, Opcode
from websockets.protocol import State
from websockets.uri import parse_uri

from ingest_daemons.connector.ws_client import (
    CLOSE_INVALID_DATA,
    CLOSE_PROTOCOL_ERROR,
    CLOSE_TOO_BIG,
    Control,
    ProtocolError,
)


class LibraryFrameParser:
    """``feed(bytes) -> messages``, raising :class:`ProtocolError` (with ``messages`` and ``close_code``) as
    the own parser does, but parsed by ``websockets``."""

    def __init__(self, max_size: int) -> None:
        self._protocol = ClientProtocol(parse_uri("ws://reference.invalid/"), state=State.OPEN, max_size=max_size)
        self._frag: list[bytes] = []
        self._utf8: codecs.IncrementalDecoder | None = None
        self._failed: ProtocolError | None = None

    def feed(self, data: bytes) -> list[bytes | Control]:
        if self._failed is not None:
            raise self._failed
        protocol = self._protocol
        protocol.receive_data(data)
        protocol.data_to_send()  # its automatic pongs and close echoes: the caller answers by itself
        out: list[bytes | Control] = []
        try:
            for frame in protocol.events_received():
                if not isinstance(frame, Frame):  # no handshake here: the protocol starts open
                    continue
                opcode = frame.opcode
                payload = bytes(frame.data)
                if opcode is Opcode.PING or opcode is Opcode.PONG or opcode is Opcode.CLOSE:
                    out.append(Control(opcode.value, payload))
                    continue
                if opcode is Opcode.TEXT:
                    self._utf8 = codecs.getincrementaldecoder("utf-8")()
                elif opcode is Opcode.BINARY:
                    self._utf8 = None
                if self._utf8 is not None:
                    self._utf8.decode(payload, final=frame.fin)
                self._frag.append(payload)
                if frame.fin:
                    out.append(b"".join(self._frag))
                    self._frag = []
        except UnicodeDecodeError as exc:
            self._failed = ProtocolError(f"invalid UTF-8: {exc.reason}", CLOSE_INVALID_DATA)
        else:
            self._failed = _library_error(protocol.parser_exc)
        if self._failed is not None:
            self._failed.messages = out
            raise self._failed
        return out


def _library_error(exc: BaseException | None) -> ProtocolError | None:
    if exc is None:
        return None
    if isinstance(exc, PayloadTooBig):
        return ProtocolError(str(exc), CLOSE_TOO_BIG)
    if isinstance(exc, UnicodeDecodeError):  # a close reason that is not UTF-8
        return ProtocolError(str(exc), CLOSE_INVALID_DATA)
    return ProtocolError(str(exc), CLOSE_PROTOCOL_ERROR)
