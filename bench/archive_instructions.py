"""Instructions per archived message, load-immune: a recorded read replayed through the archive loop.

On a shared machine wall-clock and even CPU-time figures move with the load; instruction counts do
not. This records one real window scan (Kalshi-sized frames from ``bench/archive_throughput.py``,
published with the connector's headers into a fresh nats-server) as the reader's record batches,
then replays them through ``archive_window`` — the per-message loop, the clock profile and the
compressor, without NATS — under ``valgrind --tool=callgrind``, once with the whole recording and
once stopping before the loop, so the difference divided by the message count is the loop's
instructions per message (the shared reader is not in it).

Usage::

    python bench/archive_instructions.py record /tmp/read.pickle [--messages 30000]
    python bench/archive_instructions.py count /tmp/read.pickle      # runs callgrind twice, prints the figure
"""

from __future__ import annotations

import argparse
import asyncio
import pickle
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.archive import TimeWindow  # noqa: E402
from ingest_daemons.archive.layout import PartitionPaths  # noqa: E402
from ingest_daemons.archive.partition import archive_window  # noqa: E402

FAR_FUTURE_NS = 4_102_444_800 * 10**9


class ReplayedScan:
    """What ``archive_window`` reads from a ``WindowScan``, from recorded batches."""

    def __init__(self, batches: list[list[Any]], next_seq: int) -> None:
        self.batches = batches
        self.window = TimeWindow(0, FAR_FUTURE_NS)
        self.chunks: dict[int, bytes] = {}
        self.next_seq = next_seq
        self.stream_state = None
        self.reader = None

    def __iter__(self) -> Any:
        return iter(self.batches)


def fill_bench_stream(url: str, messages: int) -> None:
    """The archive benchmark's stream on the server at ``url``, filled with ``messages`` Kalshi-sized frames."""
    import nats

    from bench.archive_throughput import bench_stream, fill, kalshi_frames

    async def create() -> None:
        nc = await nats.connect(url)
        await nc.jetstream().add_stream(bench_stream().to_nats())
        await nc.close()

    asyncio.run(create())
    frames = kalshi_frames(messages, [f"KXBENCH-26NOV{i:03d}-T{i * 7 % 1000}.99" for i in range(500)])
    asyncio.run(fill(url, frames))


def record(path: Path, messages: int) -> None:
    from bench.archive_throughput import STREAM
    from ingest_daemons.archive.nats_wire import NatsWireClient
    from ingest_daemons.archive.reader import StreamReader
    from ingest_daemons.nats_runner import NatsServer

    with tempfile.TemporaryDirectory(prefix="ssmd-archive-instructions-") as tmp, NatsServer(Path(tmp)) as server:
        fill_bench_stream(server.url, messages)
        with NatsWireClient(server.url) as client:
            scan = StreamReader(client, STREAM).scan(TimeWindow(0, FAR_FUTURE_NS))
            batches = [list(batch) for batch in scan]
            next_seq = scan.next_seq
    path.write_bytes(pickle.dumps({"batches": batches, "next_seq": next_seq}))
    print(f"recorded {sum(map(len, batches)):,} messages in {len(batches)} batches to {path}")


def replay(path: Path, loop: bool) -> None:
    recording = pickle.loads(path.read_bytes())
    if not loop:
        return
    with tempfile.TemporaryDirectory(prefix="ssmd-archive-replay-") as tmp:
        paths = PartitionPaths(Path(tmp), "bench", "BENCH_KALSHI_ECONOMICS", "2026-01-01")
        archive_window(ReplayedScan(recording["batches"], recording["next_seq"]), paths, progress=None)


def instructions(args: list[str]) -> int:
    out = subprocess.run(["valgrind", "--tool=callgrind", "--callgrind-out-file=/dev/null", *args],
                         capture_output=True, text=True, check=True)
    match = re.search(r"Collected : (\d+)", out.stderr)
    assert match is not None, out.stderr[-2000:]
    return int(match.group(1))


def count(path: Path) -> None:
    messages = sum(map(len, pickle.loads(path.read_bytes())["batches"]))
    base = [sys.executable, __file__, "replay", str(path)]
    total = instructions([*base, "--loop"])
    empty = instructions(base)
    print(f"{messages:,} messages: {(total - empty) / messages:,.0f} instructions per archived message "
          f"(archive loop, clock profile and compressor; the reader not included)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("action", choices=["record", "replay", "count"])
    parser.add_argument("path", type=Path)
    parser.add_argument("--messages", type=int, default=30_000)
    parser.add_argument("--loop", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.action == "record":
        record(args.path, args.messages)
    elif args.action == "replay":
        replay(args.path, args.loop)
    else:
        count(args.path)


if __name__ == "__main__":
    main()
