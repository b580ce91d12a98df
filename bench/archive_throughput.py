"""Archive throughput: one partition of 1,000,000 Kalshi-sized messages, next to same-run ceilings.

Fills a fresh nats-server stream (file storage, the dev environment's limits: s2 compression) with
realistic Kalshi frames (ticker / trade / orderbook_delta shapes from tests/data/samples with varied
numbers and 500 tickers) and connector headers, published with acks by the connector's publisher.
Then, each in a fresh subprocess so its peak RSS is its own:

1. read ceiling     — scan the same window (ordered push consumer) and do nothing else;
2. archive (100k)  — materialise a partition holding the first 100,000 messages (memory baseline);
3. archive (all)   — materialise the partition holding every message: msgs/s, MB/s, peak RSS;
4. compress ceiling — gzip (isal, same level and block size) the same uncompressed JSONL bytes
                      from memory, no NATS.

Usage: ``python bench/archive_throughput.py [--messages 1000000]``. Prints a table and a JSON line;
nothing here asserts a speed (benchmarks measure, tests check behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import platform
import random
import re
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.archive import TimeWindow, archive_partition, partition_paths  # noqa: E402
from ingest_daemons.archive.nats_wire import NatsWireClient  # noqa: E402
from ingest_daemons.archive.reader import StreamReader, _message_fields, parse_timestamp_ns  # noqa: E402
from ingest_daemons.archive.writer import PartitionWriter  # noqa: E402
from ingest_daemons.config import Settings, resolve_environment  # noqa: E402
from ingest_daemons.naming import SubjectBuilder  # noqa: E402
from ingest_daemons.nats_runner import NatsServer  # noqa: E402
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher  # noqa: E402
from ingest_daemons.streams import StreamSpec, desired_streams  # noqa: E402

ENV, STREAM = "bench", "BENCH_KALSHI_ECONOMICS"
SAMPLES = REPO / "tests" / "data" / "samples"
FAR_FUTURE_NS = 4_102_444_800 * 10**9
_NUMBER = re.compile(rb'(?<=":)\d+')
_TICKER = re.compile(rb'"market_ticker":"[^"]*"')


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM: unlike ru_maxrss, not inherited across exec from the parent)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def kalshi_frames(n: int, tickers: list[str], seed: int = 7) -> list[tuple[str, str, bytes]]:
    """(message type, ticker, frame) with the shapes and sizes of real Kalshi frames."""
    rng = random.Random(seed)
    templates = []
    for name, kind in (("kalshi_ticker.jsonl", "ticker"), ("kalshi_trade.jsonl", "trade"),
                       ("kalshi_orderbook.jsonl", "orderbook")):
        for line in (SAMPLES / name).read_bytes().splitlines():
            if b'"market_ticker"' in line:
                templates.append((kind, line))
    weights = [3 if kind == "orderbook" else 1 for kind, _ in templates]  # deltas dominate real traffic
    out = []
    for _ in range(n):
        kind, line = rng.choices(templates, weights)[0]
        ticker = rng.choice(tickers)
        frame = _TICKER.sub(b'"market_ticker":"%s"' % ticker.encode(), line, count=1)
        frame = _NUMBER.sub(lambda m: str(rng.randrange(10 ** len(m.group(0)))).encode(), frame)
        out.append((kind, ticker, frame))
    return out


async def fill(url: str, frames: list[tuple[str, str, bytes]]) -> float:
    subjects = SubjectBuilder(ENV, "kalshi")
    template = HeaderTemplate("bench-conn-1-", {"Ssmd-Shard": "0", "Ssmd-Conn": "bench-conn-1"})
    publisher = JetStreamPublisher(url, name="bench-fill", max_in_flight=20_000)
    await publisher.start()
    started = time.perf_counter()
    for i, (kind, ticker, frame) in enumerate(frames):
        publisher.publish_nowait(subjects.subject("economics", kind, ticker), frame, template.render(i, time.time_ns()))
        if publisher.full:
            await publisher.wait_room()
    if not await publisher.drain(120):
        raise RuntimeError("fill did not finish")
    elapsed = time.perf_counter() - started
    await publisher.close()
    return elapsed


def bench_stream() -> StreamSpec:
    dev = resolve_environment(Settings.from_env(exchanges_dir=REPO / "exchanges"), env_name="dev")
    limits = desired_streams(dev)[0].limits
    return StreamSpec(STREAM, (f"{ENV}.kalshi.economics.>",), limits, "archive benchmark", ENV)


# ---------------------------------------------------------------- child phases (fresh processes)


def child_read(url: str, start_ns: int, end_ns: int) -> dict[str, float]:
    with NatsWireClient(url) as client:
        scan = StreamReader(client, STREAM).scan(TimeWindow(start_ns, end_ns))
        cpu = time.process_time()
        started = time.perf_counter()
        count = payload = 0
        for batch in scan:
            count += len(batch)
            payload += sum(len(r[4]) for r in batch)
        elapsed = time.perf_counter() - started
        cpu = time.process_time() - cpu
    return {"count": count, "seconds": elapsed, "msgs_per_s": count / elapsed, "python_cpu_s": cpu,
            "payload_mb_per_s": payload / 1e6 / elapsed,
            "peak_rss_mb": peak_rss_mb()}


def child_archive(url: str, root: str, key: str, start_ns: int, end_ns: int) -> dict[str, float]:
    cpu = time.process_time()
    result = archive_partition(url, Path(root), ENV, STREAM, key, TimeWindow(start_ns, end_ns), progress=None)
    cpu = time.process_time() - cpu
    m = result.manifest
    return {"count": m.count, "seconds": result.duration_s, "msgs_per_s": result.msgs_per_s, "python_cpu_s": cpu,
            "mb_per_s": result.mb_per_s, "bytes": m.bytes, "uncompressed_bytes": m.uncompressed_bytes,
            "ratio": result.compression_ratio, "peak_rss_mb": peak_rss_mb()}


def child_compress(root: str, key: str) -> dict[str, float]:
    paths = partition_paths(Path(root), ENV, STREAM, key)
    data = gzip.decompress(paths.data.read_bytes())
    target = partition_paths(Path(root), ENV, STREAM + "_COMPRESS_ONLY", key)
    chunk = 1 << 20
    started = time.perf_counter()
    with PartitionWriter(target) as writer:
        for offset in range(0, len(data), chunk):
            writer.write(data[offset : offset + chunk])
        writer.finish()
        writer.commit(b"{}")
    elapsed = time.perf_counter() - started
    return {"uncompressed_bytes": len(data), "seconds": elapsed, "mb_per_s": len(data) / 1e6 / elapsed,
            "ratio": len(data) / target.data.stat().st_size}


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (from /proc: works for the nats-server child)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_child(server_pid: int | None, *args: str) -> dict[str, float]:
    """One phase in a fresh interpreter; adds CPU seconds used by it and by nats-server meanwhile.

    CPU per message is the figure to compare between runs on a shared machine: wall-clock rates
    drop when other work competes for the two cores, CPU per message does not.
    """
    before = cpu_seconds(server_pid) if server_pid else 0.0
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    result: dict[str, float] = json.loads(out.stdout.strip().splitlines()[-1])
    if server_pid:
        result["server_cpu_s"] = cpu_seconds(server_pid) - before
    return result


# ---------------------------------------------------------------- main


def machine() -> dict[str, object]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "load_avg_1m_at_start": round(os.getloadavg()[0], 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        baseline = peak_rss_mb()  # after imports: the interpreter, nats-py, pydantic, isal, orjson
        phase, *rest = args.child
        if phase == "read":
            result = child_read(rest[0], int(rest[1]), int(rest[2]))
        elif phase == "archive":
            result = child_archive(rest[0], rest[1], rest[2], int(rest[3]), int(rest[4]))
        else:
            result = child_compress(rest[0], rest[1])
        result["baseline_rss_mb"] = baseline
        print(json.dumps(result))
        return

    info = machine()
    with tempfile.TemporaryDirectory(prefix="ssmd-archive-bench-") as tmp, NatsServer(Path(tmp) / "nats") as server:
        import nats

        async def create() -> str:
            nc = await nats.connect(server.url)
            await nc.jetstream().add_stream(bench_stream().to_nats())
            version = nc._server_info.get("version", "?")
            await nc.close()
            return str(version)

        info["nats_server"] = asyncio.run(create())
        frames = kalshi_frames(args.messages, [f"KXBENCH-26NOV{i:03d}-T{i * 7 % 1000}.99" for i in range(500)])
        payload = sum(len(f) for _, _, f in frames)
        print(f"filling {args.messages:,} messages (avg frame {payload / len(frames):.0f} B) ...", flush=True)
        fill_s = asyncio.run(fill(server.url, frames))
        del frames
        with NatsWireClient(server.url) as client:
            state = StreamReader(client, STREAM).state()
        assert state.messages == args.messages, f"stream holds {state.messages}, expected {args.messages}"
        start = (state.first_ts_ns or 0) - 1
        split_ns = _ts_of(server.url, state.first_seq + min(100_000, args.messages - 1))
        root = str(Path(tmp) / "archive")
        read = run_child(server.pid, "read", server.url, str(start), str(FAR_FUTURE_NS))
        small = run_child(server.pid, "archive", server.url, root, "2026-01-01", str(start), str(split_ns))
        full = run_child(server.pid, "archive", server.url, root, "2026-01-02", str(start), str(FAR_FUTURE_NS))
        compress = run_child(None, "compress", root, "2026-01-02")

    print()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, nats-server {info['nats_server']}, "
          f"load {info['load_avg_1m_at_start']} at start")
    print(f"fill: {args.messages:,} msgs in {fill_s:.1f}s ({args.messages / fill_s:,.0f} msgs/s, acked)")
    print(f"{'phase':<36}{'msgs':>11}{'msgs/s':>11}{'MB/s':>9}{'peak RSS (after imports)':>27}"
          f"{'CPU us/msg: python, nats-server':>34}")

    def cpu(row: dict[str, float]) -> str:
        count = row["count"]
        return f"{row['python_cpu_s'] / count * 1e6:>23.2f}, {row['server_cpu_s'] / count * 1e6:.2f}"

    print(f"{'read ceiling (scan only, no write)':<36}{read['count']:>11,.0f}{read['msgs_per_s']:>11,.0f}"
          f"{read['payload_mb_per_s']:>9.1f}{read['peak_rss_mb']:>11.0f} MB ({read['baseline_rss_mb']:.0f} MB)"
          f"{cpu(read)}")
    for label, row in (("archive, first 100k messages", small), ("archive, all messages", full)):
        print(f"{label:<36}{row['count']:>11,.0f}{row['msgs_per_s']:>11,.0f}{row['mb_per_s']:>9.1f}"
              f"{row['peak_rss_mb']:>11.0f} MB ({row['baseline_rss_mb']:.0f} MB){cpu(row)}")
    print(f"{'compress ceiling (isal, no NATS)':<36}{'':>11}{'':>11}{compress['mb_per_s']:>9.1f}")
    print(f"archive file: {full['bytes'] / 1e6:.1f} MB, ratio {full['ratio']:.2f} "
          f"(MB/s = uncompressed JSONL written; read ceiling MB/s = payload bytes)")
    print(json.dumps({"machine": info, "fill_s": fill_s, "read": read, "archive_100k": small,
                      "archive_all": full, "compress": compress}))


def _ts_of(url: str, seq: int) -> int:
    with NatsWireClient(url) as client:
        reply = client.send_request(f"$JS.API.DIRECT.GET.{STREAM}", json.dumps({"seq": seq}).encode())
        for _, _, _, headers, _ in client.frames_for(reply):
            assert headers is not None
            return parse_timestamp_ns(_message_fields(headers)[1])
    raise RuntimeError("no answer")


if __name__ == "__main__":
    main()
