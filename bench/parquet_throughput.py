"""Parquet throughput: one archive partition of 1,000,000 Kalshi messages → typed Parquet tables.

The partition is written in the archive's own format (envelope lines, isal gzip, the archive
writer) from realistic frames: every ticker / trade / order book shape of tests/data/samples (both
payload eras), varied numbers, 500 tickers, in a Kalshi-like mix (order book deltas 64%, ticker
25%, trade 10%, snapshots 1%). No NATS: this measures the conversion, which only reads files.

Then, each in a fresh subprocess so its peak RSS is its own:

1. decompress ceiling — read and gunzip the file, split lines, nothing else;
2. convert            — ``convert_partition``: msgs/s, peak RSS, CPU seconds, rows per table.

Usage: ``python bench/parquet_throughput.py [--messages 1000000] [--chunk-mb 16]``. Prints a
table and a JSON line; nothing here asserts a speed (benchmarks measure, tests check behaviour).
"""

from __future__ import annotations

import argparse
import json
import random
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from bench.archive_throughput import machine, peak_rss_mb  # noqa: E402
from ingest_daemons.archive import envelope, partition_paths  # noqa: E402
from ingest_daemons.archive.writer import PartitionWriter  # noqa: E402
from ingest_daemons.naming import SubjectBuilder  # noqa: E402

ENV, STREAM, KEY = "bench", "BENCH_KALSHI_ECONOMICS", "2026-01-02"
DAY_START_NS = 1_767_312_000 * 10**9  # 2026-01-02T00:00:00Z
_TS = re.compile(rb'"ts":\d+')
_TS_MS = re.compile(rb'"ts_ms":\d+')
_NUMBER = re.compile(rb'(?<=":)\d+')
_MARKET = re.compile(rb'"market_ticker":"[^"]*"')
SAMPLES = REPO / "tests" / "data" / "samples"
MIX = {"orderbook_delta": 64, "ticker": 25, "trade": 10, "orderbook_snapshot": 1}
# Sample lines (1-based) in the payload format Kalshi sends since 2026-03-12: *_dollars / *_fp only.
CURRENT_ERA = {"kalshi_ticker.jsonl": {13, 16}, "kalshi_trade.jsonl": {11, 14}, "kalshi_orderbook.jsonl": {3, 6}}


def kalshi_frames(n: int, tickers: list[str], era: str = "current", seed: int = 11) -> Iterator[tuple[str, str, bytes]]:
    """(subject type, ticker, frame): a sample frame of a kind drawn from MIX, numbers varied.

    ``era`` "current": only post-2026-03-12 shapes (what a day looks like now); "all": every sample,
    legacy dual-format frames included (about 1.4x longer: a historical backfill)."""
    rng = random.Random(seed)
    by_kind: dict[str, list[bytes]] = {kind: [] for kind in MIX}
    for name in ("kalshi_ticker.jsonl", "kalshi_trade.jsonl", "kalshi_orderbook.jsonl"):
        for number, line in enumerate((SAMPLES / name).read_bytes().splitlines(), 1):
            if era == "current" and number not in CURRENT_ERA[name]:
                continue
            kind = line.split(b'"type":"', 1)[1].split(b'"', 1)[0].decode()
            if kind in by_kind and b'"market_ticker"' in line:
                by_kind[kind].append(line)
    kinds, weights = list(MIX), list(MIX.values())
    for _ in range(n):
        kind = rng.choices(kinds, weights)[0]
        ticker = rng.choice(tickers)
        frame = _MARKET.sub(b'"market_ticker":"%s"' % ticker.encode(), rng.choice(by_kind[kind]), count=1)
        frame = _NUMBER.sub(lambda m: str(rng.randrange(10 ** len(m.group(0)))).encode(), frame)
        yield ("orderbook" if kind.startswith("orderbook") else kind), ticker, frame


def write_partition(root: Path, messages: int, era: str = "current") -> Path:
    """An archive data file of ``messages`` lines spread over the day (no manifest needed here)."""
    subjects = SubjectBuilder(ENV, "kalshi")
    paths = partition_paths(root, ENV, STREAM, KEY)
    step = 86_400 * 10**9 // max(messages, 1)
    subject_json: dict[str, bytes] = {}
    with PartitionWriter(paths) as writer:
        lines: list[bytes] = []
        tickers = [f"KXBENCH-26NOV{i:03d}-T{i * 7 % 1000}.99" for i in range(500)]
        for i, (kind, ticker, frame) in enumerate(kalshi_frames(messages, tickers, era)):
            subject = subjects.subject("economics", kind, ticker)
            subj = subject_json.get(subject)
            if subj is None:
                subj = subject_json[subject] = envelope.subject_json(subject.encode())
            ts = DAY_START_NS + i * step
            # the generator randomises every number; exchange times must stay plausible
            frame = _TS_MS.sub(b'"ts_ms":%d' % (ts // 10**6 - 300), _TS.sub(b'"ts":%d' % (ts // 10**9), frame))
            line, _ = envelope.encode_line(i + 1, ts, subj, b"%d" % (ts - 250_000), frame)
            lines.append(line)
            if len(lines) >= 50_000:
                writer.write(b"".join(lines))
                lines.clear()
        writer.write(b"".join(lines))
        writer.finish()
        writer.commit(b"{}")
    return paths.data


def _lines(path: Path) -> Iterator[bytes]:
    from ingest_daemons.archive.cat import iter_lines

    return iter_lines(path)


def child_decompress(path: str) -> dict[str, float]:
    from isal import isal_zlib

    started, cpu = time.perf_counter(), time.process_time()
    inflater = isal_zlib.decompressobj(31)
    count = 0
    rest = b""
    with open(path, "rb") as handle:
        while block := handle.read(4 << 20):
            data = rest + inflater.decompress(block)
            lines = data.split(b"\n")
            rest = lines.pop()
            count += len(lines)
    elapsed = time.perf_counter() - started
    return {"count": count, "seconds": elapsed, "msgs_per_s": count / elapsed,
            "python_cpu_s": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb()}


def child_convert(path: str, out: str, chunk_mb: int) -> dict[str, object]:
    from ingest_daemons.parquet import DEFAULT_CHUNK_BYTES, KALSHI_TABLES, convert_partition

    cpu = time.process_time()
    chunk_bytes = (chunk_mb << 20) or DEFAULT_CHUNK_BYTES
    result = convert_partition(Path(path), Path(out), KALSHI_TABLES, chunk_bytes=chunk_bytes)
    return {"count": result.lines, "seconds": result.duration_s, "msgs_per_s": result.msgs_per_s,
            "python_cpu_s": time.process_time() - cpu, "peak_rss_mb": peak_rss_mb(), "rows": result.rows,
            "rejects": result.rejects, "parquet_bytes": sum(result.file_bytes.values())}


def run_child(*args: str) -> dict[str, object]:
    out = subprocess.run([sys.executable, __file__, "--child", *args], capture_output=True, text=True, check=True)
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--messages", type=int, default=1_000_000)
    parser.add_argument("--chunk-mb", type=int, default=0, help="JSON text per chunk (default 0: the library's)")
    parser.add_argument("--era", choices=("current", "all"), default="current",
                        help="payload shapes: current (since 2026-03-12, default) or all (legacy included)")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        baseline = peak_rss_mb()
        phase, *rest = args.child
        result = child_decompress(rest[0]) if phase == "decompress" else child_convert(rest[0], rest[1], int(rest[2]))
        result["baseline_rss_mb"] = baseline
        print(json.dumps(result))
        return

    info = machine()
    with tempfile.TemporaryDirectory(prefix="ssmd-parquet-bench-") as tmp:
        started = time.perf_counter()
        data = write_partition(Path(tmp) / "archive", args.messages, args.era)
        text_mb = sum(len(line) for line in _lines(data)) / 1e6
        print(f"wrote {args.messages:,} messages, {args.era} era ({text_mb:.0f} MB of JSON, "
              f"{data.stat().st_size / 1e6:.0f} MB gzip) "
              f"in {time.perf_counter() - started:.1f}s", flush=True)
        ceiling = run_child("decompress", str(data))
        convert = run_child("convert", str(data), str(Path(tmp) / "parquet" / KEY), str(args.chunk_mb))

    print()
    print(f"machine: {info['cpu']}, {info['cores']} cores, Python {info['python']}, "
          f"load {info['load_avg_1m_at_start']} at start")
    print(f"{'phase':<34}{'msgs':>11}{'msgs/s':>11}{'peak RSS (after imports)':>27}{'CPU us/msg':>12}")
    for name, row in (("decompress + split (ceiling)", ceiling), ("convert to Parquet", convert)):
        count = float(row["count"])  # type: ignore[arg-type]
        print(f"{name:<34}{count:>11,.0f}{float(row['msgs_per_s']):>11,.0f}"  # type: ignore[arg-type]
              f"{float(row['peak_rss_mb']):>11.0f} MB ({float(row['baseline_rss_mb']):.0f} MB)"  # type: ignore[arg-type]
              f"{float(row['python_cpu_s']) / count * 1e6:>12.2f}")  # type: ignore[arg-type]
    print(f"rows: {convert['rows']}, rejects: {convert['rejects']}, "
          f"parquet {float(convert['parquet_bytes']) / 1e6:.0f} MB")  # type: ignore[arg-type]
    print(json.dumps({"machine": info, "era": args.era, "decompress": ceiling, "convert": convert}))


if __name__ == "__main__":
    main()
