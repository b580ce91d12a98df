"""Publisher throughput with TLS and credentials on, next to plain TCP, in the same run.

Two fresh nats-servers (file storage): one plain, one with TLS (a CA made on the spot) and the
least-privilege roles; the connector's publisher (``JetStreamPublisher``, on uvloop) publishes the
same ~200-byte frames with acks to each, the runs alternating so machine noise hits both alike.
Reports acked msgs/s and this process's CPU per message for each, best of ``--rounds``.

Usage: ``python bench/publisher_tls.py [--frames 200000] [--rounds 3]``. Nothing here asserts a
speed (benchmarks measure, tests check behaviour).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import uvloop

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ingest_daemons.nats_client import connect_once  # noqa: E402
from ingest_daemons.nats_runner import NatsServer, free_port  # noqa: E402
from ingest_daemons.nats_secure import prepare_secure_nats  # noqa: E402
from ingest_daemons.nats_settings import NatsSettings  # noqa: E402
from ingest_daemons.publisher import HeaderTemplate, JetStreamPublisher  # noqa: E402

ENV = "bench"
SUBJECT_PREFIX = f"{ENV}.kalshi.economics.json.ticker."


async def prepare(admin: NatsSettings) -> None:
    from nats.js import api as js_api

    nc = await connect_once(admin, "bench-setup")
    js = nc.jetstream()
    try:
        await js.delete_stream("BENCH_KALSHI_ECONOMICS")
    except Exception:
        pass
    await js.add_stream(js_api.StreamConfig(name="BENCH_KALSHI_ECONOMICS", subjects=[f"{ENV}.kalshi.economics.>"],
                                            storage=js_api.StorageType.FILE, duplicate_window=120))
    await nc.close()


async def publish(settings: NatsSettings, frames: int) -> dict[str, float]:
    pub = JetStreamPublisher(settings, max_in_flight=50_000)
    await pub.start()
    headers = HeaderTemplate("bench:", {"Ssmd-Shard": "0", "Ssmd-Conn": "bench"})
    payload = (b'{"type":"ticker","sid":1,"msg":{"market_ticker":"KXBTCD-26FEB1217-T72749.99","price":42,'
               b'"yes_bid":41,"yes_ask":43,"volume":123456,"ts":1770912000}}')
    subjects = [f"{SUBJECT_PREFIX}M{i}" for i in range(100)]
    cpu0, start = time.process_time(), time.perf_counter()
    for i in range(frames):
        await pub.publish(subjects[i % 100], payload, headers.render(i, time.time_ns()))
        if i % 256 == 0:
            await asyncio.sleep(0)
    assert await pub.drain(120), "frames left unacknowledged"
    elapsed, cpu = time.perf_counter() - start, time.process_time() - cpu0
    await pub.close()
    return {"acked_per_s": frames / elapsed, "client_cpu_us_per_msg": 1e6 * cpu / frames}


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--frames", type=int, default=200_000, help="frames per run (default 200000)")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds, best kept (default 3)")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ssmd-bench-tls-"))
    port = free_port()
    setup = prepare_secure_nats(tmp / "secure", f"nats://127.0.0.1:{port}", ENV, ["kalshi"])
    plain = NatsServer(tmp / "plain", max_file_store=2**36).start()
    secure = NatsServer(tmp / "tls", port=port, max_file_store=2**36, config_lines=setup.config_lines).start()
    runs = {"plain": (NatsSettings.parse(plain.url), NatsSettings.parse(plain.url)),
            "tls+auth": (setup.clients["admin"], setup.clients["connector-kalshi"])}
    best: dict[str, dict[str, float]] = {}
    try:
        for round_ in range(args.rounds):
            for name, (admin, connector) in runs.items():
                await prepare(admin)
                result = await publish(connector, args.frames)
                print(f"round {round_ + 1} {name:9} {result['acked_per_s']:>10,.0f} acked msgs/s, "
                      f"client CPU {result['client_cpu_us_per_msg']:.2f} us/msg", flush=True)
                if name not in best or result["acked_per_s"] > best[name]["acked_per_s"]:
                    best[name] = result
    finally:
        plain.stop()
        secure.stop()
    ratio = best["tls+auth"]["acked_per_s"] / best["plain"]["acked_per_s"]
    print(f"best: plain {best['plain']['acked_per_s']:,.0f} msgs/s, TLS+auth {best['tls+auth']['acked_per_s']:,.0f} "
          f"msgs/s ({100 * ratio:.0f}% of plain)")
    print(json.dumps({"machine": f"{platform.node()} {os.cpu_count()} cores", "date": time.strftime("%Y-%m-%d"),
                      "frames": args.frames, **best}))


if __name__ == "__main__":
    uvloop.run(main())
