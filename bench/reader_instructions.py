"""Instructions per message of the archive reader, load-immune: a recorded scan's socket bytes replayed.

``archive_instructions.py`` replays the reader's records through the archive loop; this measures the
reader itself. It records every byte one real window scan receives (Kalshi-sized frames from
``bench/archive_throughput.py``, published with the connector's headers into a fresh nats-server),
read by read, then replays the same scan — ``StreamReader.scan`` over a ``NatsWireClient`` whose
socket reads return the recorded chunks and whose writes go nowhere — under ``valgrind
--tool=callgrind``, once whole and once stopping after loading the recording, so the difference
divided by the message count is the reader's instructions per message (wire parsing, records,
flow-control answers; the consumer's create and delete requests spread over every message).

Usage::

    python bench/reader_instructions.py record /tmp/reads.pickle [--messages 30000]
    python bench/reader_instructions.py count /tmp/reads.pickle      # runs callgrind twice, prints the figure
"""

from __future__ import annotations

import argparse
import pickle
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.archive_instructions import fill_bench_stream, instructions  # noqa: E402
from ingest_daemons.archive import TimeWindow  # noqa: E402
from ingest_daemons.archive.nats_wire import NatsWireClient  # noqa: E402
from ingest_daemons.archive.reader import StreamReader  # noqa: E402

FAR_FUTURE_NS = 4_102_444_800 * 10**9
STREAM = "BENCH_KALSHI_ECONOMICS"  # bench/archive_throughput.py's


class ReplayedClient(NatsWireClient):
    """A connection whose reads are a recording's and whose writes are dropped."""

    def __init__(self, inbox: str, reads: list[bytes]) -> None:
        super().__init__("nats://replay:4222")
        self._inbox = inbox
        self._reads = iter(reads)

    def connect(self) -> NatsWireClient:
        self._sock = object()  # type: ignore[assignment]  # never used: _send and _receive are replaced
        self._frames = self._frame_reader()
        self.subscribe(self._inbox + "*")  # sid 1, as a real connection's reply inbox
        return self

    def close(self) -> None:
        self._sock = self._frames = None

    def _send(self, data: bytes) -> None:
        pass

    def _receive(self) -> bytes:
        return next(self._reads)


def read_all(client: NatsWireClient) -> int:
    count = 0
    for batch in StreamReader(client, STREAM).scan(TimeWindow(0, FAR_FUTURE_NS)):
        count += len(batch)
    return count


def record(path: Path, messages: int) -> None:
    from ingest_daemons.nats_runner import NatsServer

    with tempfile.TemporaryDirectory(prefix="ssmd-reader-instructions-") as tmp, NatsServer(Path(tmp)) as server:
        fill_bench_stream(server.url, messages)
        reads: list[bytes] = []
        with NatsWireClient(server.url) as client:
            receive = client._receive

            def recording() -> bytes:
                chunk = receive()
                reads.append(chunk)
                return chunk

            client._receive = recording  # type: ignore[method-assign]
            count = read_all(client)
            inbox = client._inbox
    path.write_bytes(pickle.dumps({"inbox": inbox, "reads": reads, "count": count}))
    print(f"recorded {count:,} messages in {len(reads)} socket reads ({sum(map(len, reads)):,} bytes) to {path}")


def replay(path: Path, scan: bool) -> None:
    recording = pickle.loads(path.read_bytes())
    if not scan:
        return
    with ReplayedClient(recording["inbox"], recording["reads"]) as client:
        count = read_all(client)
    assert count == recording["count"], (count, recording["count"])


def count(path: Path) -> None:
    messages = pickle.loads(path.read_bytes())["count"]
    base = [sys.executable, __file__, "replay", str(path)]
    total = instructions([*base, "--scan"])
    empty = instructions(base)
    print(f"{messages:,} messages: {(total - empty) / messages:,.0f} instructions per message read "
          f"(the reader: socket bytes to records)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["record", "replay", "count"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--scan", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.action == "record":
        record(args.path, args.messages)
    elif args.action == "replay":
        replay(args.path, args.scan)
    else:
        count(args.path)


if __name__ == "__main__":
    main()
