"""Types of the C delivery parser (_deliveries.c); reader.WindowScan._raw_batch is its specification."""

from ingest_daemons.archive.reader import Record

STOP_PARTIAL: int
STOP_FRAME: int
STOP_NUMBER: int
STOP_ODD: int
STOP_CONTROL: int
STOP_REPLY: int
STOP_SEQUENCE: int
STOP_WINDOW_END: int
STOP_STREAM_END: int
STOP_CHUNK: int
STOP_HEADER: int

def plain_deliveries(
    data: bytes, pos: int, sid: bytes, ack_prefix: bytes | None, expected: int, end_ns: int, out: list[Record], /
) -> tuple[int, int, int | None, int]: ...
