"""``ssmd archive cat|verify|replay``: read archived partitions back, check them, replay them.

A partition is named by any of:

* a file: ``var/archive/dev/DEV_KALSHI_ECONOMICS/2026-03-01.jsonl.gz`` (its manifest beside it);
* a copy in a bucket: ``gs://bucket/ssmd/dev/DEV_KALSHI_ECONOMICS/2026-03-01.jsonl.gz``
  (downloaded to a scratch folder, CRC32C-checked, then read like a file);
* ``STREAM/DAY``: ``DEV_KALSHI_ECONOMICS/2026-03-01`` under the environment's archive folder.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest_daemons.archive import PartitionPaths, partition_paths, verify_file
from ingest_daemons.archive.cat import CorruptPartition, MessageFilter, iter_messages
from ingest_daemons.archive.layout import DATA_SUFFIX
from ingest_daemons.archive.replay import ReplayError, replay_partition
from ingest_daemons.cli import archive_now_cmd
from ingest_daemons.cli.common import add_command, add_env_arg, add_exchanges_arg, exit_quietly_on_broken_pipe
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.errors import ConfigError
from ingest_daemons.gcs import CopyError, fetch_partition, gcs_store, parse_gs_uri


def register(sub: Any) -> None:
    archive = add_command(
        sub, "archive", help="read archived partitions back: print, verify, replay",
        description="Work with archive partitions (one JSONL.gz file and manifest per stream and UTC day),\n"
                    "local or in a bucket. PARTITION is a file path, a gs:// URI, or STREAM/DAY under the\n"
                    "environment's archive folder.",
        examples="  ssmd archive cat DEV_KALSHI_ECONOMICS/2026-03-01 --type trade\n"
                 "  ssmd archive verify gs://my-bucket/ssmd/prod/PROD_KALSHI_CRYPTO/2026-03-01.jsonl.gz\n"
                 "  ssmd archive replay DEV_KALSHI_ECONOMICS/2026-03-01 --prefix backtest.kalshi.economics\n",
    )
    actions = archive.add_subparsers(dest="archive_command", metavar="ACTION", required=True)

    cat = add_command(
        actions, "cat", help="print a partition's messages (optionally some types / markets)",
        description="Print the partition's messages in stream order, one per line: the archive line\n"
                    "(envelope with seq, ts, subject, recv_ns and the frame), or with --frames only the\n"
                    "exchange frame, byte for byte.",
        examples="  ssmd archive cat DEV_KALSHI_ECONOMICS/2026-03-01 --type trade --ticker KXBTCD-26FEB1217-T72749.99"
                 "\n"
                 "  ssmd archive cat var/archive/dev/DEV_KALSHI_ECONOMICS/2026-03-01.jsonl.gz --frames --limit 10\n",
    )
    _partition_args(cat)
    cat.add_argument("--type", action="append", dest="types", metavar="TYPE",
                     help="message type (subject token: ticker, trade, orderbook, gap, status, ...); repeatable")
    cat.add_argument("--ticker", action="append", dest="tickers", metavar="TICKER",
                     help="market ticker as the exchange writes it; repeatable")
    cat.add_argument("--frames", action="store_true", help="print only the exchange frames (default: archive lines)")
    cat.add_argument("--limit", type=int, default=None, help="stop after N messages (default: all)")
    cat.set_defaults(func=run_cat)

    verify = add_command(
        actions, "verify", help="check a partition file against its manifest",
        description="Check size and sha256 against the manifest, decompress with zlib (gzip trailer\n"
                    "CRC), parse every line, and compare count, sequence range, holes and message types.\n"
                    "Reports duplicates dropped (later copies of a Nats-Msg-Id) and a lost head of the day.\n"
                    "Exit status 0 when everything matches, 1 otherwise.",
        examples="  ssmd archive verify DEV_KALSHI_ECONOMICS/2026-03-01\n"
                 "  ssmd archive verify gs://my-bucket/ssmd/prod/PROD_KALSHI_CRYPTO/2026-03-01.jsonl.gz\n",
    )
    _partition_args(verify)
    verify.set_defaults(func=run_verify)

    replay = add_command(
        actions, "replay", help="publish a partition again under another subject prefix",
        description="Publish the partition's frames, byte for byte and in order, with the first three\n"
                    "subject tokens (env.feed.category) replaced by --prefix, at the original pace,\n"
                    "--speed times faster, or --max-speed. Acknowledged by a stream unless --no-ack.",
        examples="  ssmd archive replay DEV_KALSHI_ECONOMICS/2026-03-01 --prefix backtest.kalshi.economics --speed 60\n"
                 "  ssmd archive replay DEV_KALSHI_ECONOMICS/2026-03-01 --prefix bt1.kalshi.economics --max-speed\n",
    )
    _partition_args(replay)
    replay.add_argument("--prefix", required=True, help="replaces env.feed.category, e.g. backtest.kalshi.economics")
    pace = replay.add_mutually_exclusive_group()
    pace.add_argument("--speed", type=float, default=1.0, help="pace multiplier (default: 1, the original pace)")
    pace.add_argument("--max-speed", action="store_true", help="no pacing: as fast as NATS takes them")
    replay.add_argument("--type", action="append", dest="types", metavar="TYPE", help="only this type; repeatable")
    replay.add_argument("--ticker", action="append", dest="tickers", metavar="TICKER", help="only this market")
    replay.add_argument("--no-ack", action="store_true",
                        help="plain publishes for live subscribers (default: JetStream, acknowledged)")
    replay.add_argument("--nats-url", default=None, help="override $NATS_URL and the environment's nats_url")
    replay.set_defaults(func=run_replay)
    archive_now_cmd.register(actions)


def _partition_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("partition", metavar="PARTITION", help="file path, gs:// URI, or STREAM/DAY")
    add_env_arg(parser)
    add_exchanges_arg(parser)


@contextlib.contextmanager
def resolve_partition(reference: str, args: argparse.Namespace) -> Iterator[PartitionPaths]:
    """Local paths of the named partition (a bucket copy is downloaded for the duration)."""
    if reference.startswith("gs://"):
        bucket, name = parse_gs_uri(reference)
        with tempfile.TemporaryDirectory(prefix="ssmd-archive-") as scratch:
            paths, _ = fetch_partition(gcs_store(bucket), name, Path(scratch))
            yield paths
        return
    path = Path(reference)
    if path.name.endswith(DATA_SUFFIX) and (path.exists() or path.parent.exists()):
        key = path.name[: -len(DATA_SUFFIX)]
        yield partition_paths(path.parent.parent.parent, path.parent.parent.name, path.parent.name, key)
        return
    stream, _, day = reference.partition("/")
    if not stream or not day or "/" in day:
        raise ValueError(f"{reference!r}: expected a file ending in {DATA_SUFFIX}, a gs:// URI, or STREAM/DAY")
    env = resolve_environment(Settings.from_env(exchanges_dir=args.exchanges, env_name=args.env))
    yield partition_paths(env.archive_root, env.name, stream, day)


def _run(args: argparse.Namespace, action: Any) -> int:
    try:
        with resolve_partition(args.partition, args) as paths:
            return int(action(paths))
    except ConfigError as exc:
        print(f"invalid config:\n{exc}", file=sys.stderr)
    except (ValueError, CopyError, CorruptPartition, ReplayError, FileNotFoundError) as exc:
        print(str(exc), file=sys.stderr)
    return 1


def run_cat(args: argparse.Namespace) -> int:
    def cat(paths: PartitionPaths) -> int:
        selection = MessageFilter.of(args.types, args.tickers)
        out = sys.stdout.buffer
        n = lone = 0
        with exit_quietly_on_broken_pipe():  # `ssmd archive cat … | head`
            for message in iter_messages(paths.data, selection):
                if args.frames and message.lone_chunk is not None:
                    lone += 1  # a piece of a frame, not a frame: never printed as one
                    continue
                out.write((message.frame if args.frames else message.line) + b"\n")
                n += 1
                if args.limit is not None and n >= args.limit:
                    break
            out.flush()
        if lone:
            print(f"skipped {lone} chunk(s) of frames that could not be rebuilt (seqs in the manifest's "
                  f"chunks.incomplete; see them with: ssmd archive cat without --frames)", file=sys.stderr)
        return 0

    return _run(args, cat)


def run_verify(args: argparse.Namespace) -> int:
    def verify(paths: PartitionPaths) -> int:
        result = verify_file(paths)
        m = result.manifest
        where = f"{paths.stream} {paths.key}"
        if m is not None:
            print(f"{where}: {result.lines:,} lines, {result.bytes:,} bytes, sha256 {result.sha256[:16]}…, "
                  f"seq {result.first_seq}..{result.last_seq}")
            if m.duplicates_dropped:
                ranges = ", ".join(r.describe() for r in m.duplicate_seqs[:10])
                print(f"{where}: {m.duplicates_dropped:,} duplicates dropped (later copies of a Nats-Msg-Id "
                      f"already archived: seq {ranges}{' …' if len(m.duplicate_seqs) > 10 else ''})")
            if m.head_lost is not None:
                print(f"{where}: {m.head_lost.describe(m.partition)}")
        for problem in result.manifest_problems + result.gzip_problems:
            print(f"  problem: {problem}")
        ok = result.manifest_matches and result.gzip_ok
        print(f"{where}: {'OK: file matches its manifest' if ok else 'FAILED'}")
        return 0 if ok else 1

    return _run(args, verify)


def run_replay(args: argparse.Namespace) -> int:
    def replay(paths: PartitionPaths) -> int:
        nats_url = args.nats_url
        if nats_url is None:
            nats_url = resolve_environment(Settings.from_env(exchanges_dir=args.exchanges, env_name=args.env)).nats_url
        result = asyncio.run(replay_partition(
            paths.data, nats_url, args.prefix, speed=None if args.max_speed else args.speed,
            selection=MessageFilter.of(args.types, args.tickers), acked=not args.no_ack,
            msg_id_prefix=f"replay:{paths.stream}:{paths.key}:",
        ))
        print(f"replayed {result.published:,} messages (seq {result.first_seq}..{result.last_seq}) under "
              f"{args.prefix} in {result.duration_s:.1f}s ({result.msgs_per_s:,.0f} msgs/s)")
        if result.lone_chunks:
            print(f"not replayed: {result.lone_chunks} chunk(s) of frames that could not be rebuilt", file=sys.stderr)
        return 0

    return _run(args, replay)
