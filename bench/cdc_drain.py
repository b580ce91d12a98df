"""CDC publisher throughput: how fast ``ssmd cdc`` drains a backlog of committed changes into JetStream.

A backlog of N market inserts is committed while no publisher runs; then one :class:`CdcPublisher`
per ``--window`` value starts (fresh stream, same backlog re-committed) and the benchmark times
the first change in the stream to the last. Real nats-server (file storage) and the embedded
PostgreSQL; publisher, database and server share the machine.

Usage: ``python bench/cdc_drain.py [--changes 20000] [--windows 1 256]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import yaml

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons import naming  # noqa: E402
from ingest_daemons.config import Settings, resolve_environment  # noqa: E402
from ingest_daemons.logs import configure_logging  # noqa: E402
from ingest_daemons.nats_client import connect_once  # noqa: E402
from ingest_daemons.nats_runner import NatsServer  # noqa: E402
from ingest_daemons.secmaster.cdc import CdcOptions, CdcPublisher  # noqa: E402
from ingest_daemons.secmaster.migrate import migrate  # noqa: E402
from ingest_daemons.secmaster.postgres import secmaster_database  # noqa: E402
from ingest_daemons.streams import reconcile  # noqa: E402


async def drain(env_name: str, db: str, nats_url: str, window: int, changes: int) -> float:
    """Commit ``changes`` inserts, publish them with ``window``; returns changes/s."""
    nc = await connect_once(nats_url, "bench")
    js = nc.jetstream()
    stream = naming.cdc_stream_name(env_name)
    await js.purge_stream(stream)
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute("DELETE FROM markets")
        conn.execute("DELETE FROM secmaster_cdc_outbox")
        conn.execute("INSERT INTO markets (feed, ticker, event_ticker, status) SELECT 'kalshi', 'B' || i, 'EV', "
                     "'active' FROM generate_series(0, %s - 1) AS i", (changes,))
    stop = asyncio.Event()
    publisher = CdcPublisher(CdcOptions(env=env_name, database_url=db, nats_url=nats_url, window=window,
                                        apply_migrations=False))
    task = asyncio.create_task(publisher.run(stop))
    first: float | None = None
    try:
        while True:
            held = (await js.stream_info(stream)).state.messages
            if held and first is None:
                first = time.perf_counter()
            if held >= changes:
                break
            await asyncio.sleep(0.01)
        assert first is not None
        return changes / (time.perf_counter() - first)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        await nc.close()


async def main(args: argparse.Namespace) -> None:
    configure_logging("WARNING")
    tmp = Path(tempfile.mkdtemp(prefix="ssmd-cdc-drain-", dir="/tmp"))
    os.chmod(tmp, 0o755)  # the embedded PostgreSQL runs as an unprivileged user
    nats = NatsServer(tmp / "nats").start()
    root = tmp / "exchanges"
    (root / "environments").mkdir(parents=True)
    (root / "feeds").symlink_to(REPO / "exchanges" / "feeds")
    env_doc = {"name": "bench", "nats_url": nats.url,
               "streams": {"max_age": "1h", "max_bytes": -1, "duplicate_window": "2m"}}
    (root / "environments" / "bench.yaml").write_text(yaml.safe_dump(env_doc))
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp), "bench")
    try:
        with secmaster_database(env.settings) as db:
            migrate(db)
            nc = await connect_once(nats.url, "bench")
            await reconcile(nc.jetstream(), env, apply=True)
            await nc.close()
            for window in args.windows:
                rate = await drain(env.name, db, nats.url, window, args.changes)
                print(f"window {window:>4}: {args.changes:,} changes drained at {rate:,.0f} changes/s", flush=True)
    finally:
        nats.stop()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--changes", type=int, default=20_000)
    parser.add_argument("--windows", type=int, nargs="+", default=[1, 256])
    asyncio.run(main(parser.parse_args()))
