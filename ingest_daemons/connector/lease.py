"""A lease in NATS KV, so that of several all-markets replicas exactly one subscribes and publishes.

An all-markets connector has no shard to split: two running at once would store every frame twice
(their message ids differ). So each replica first takes the lease — ``create`` on one key, which
succeeds for one replica only — and renews it; the others stand by and retry. A holder that stops
cleanly deletes the key, and a stand-by takes over within one retry interval; a holder that dies
stops renewing, and the bucket's TTL expires the key after ``ttl_s``. A holder that cannot renew
(another replica took over meanwhile, or NATS was unreachable longer than the TTL) gives up.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from nats.aio.client import Client
from nats.js.errors import BucketNotFoundError, KeyWrongLastSequenceError
from nats.js.kv import KeyValue

from ingest_daemons.logs import get_logger

log = get_logger("ssmd.lease")

DEFAULT_TTL_S = 10.0


def lease_bucket(env: str) -> str:
    return f"ssmd_lease_{env}"


class KvLease:
    def __init__(self, nc: Client, env: str, key: str, holder: str, ttl_s: float = DEFAULT_TTL_S) -> None:
        self.nc = nc
        self.bucket = lease_bucket(env)
        self.key = key
        self.holder = holder
        self.ttl_s = ttl_s
        self.revision: int | None = None
        self._kv: KeyValue | None = None

    async def _open(self, replicas: int) -> KeyValue:
        if self._kv is None:
            js = self.nc.jetstream()
            try:
                self._kv = await js.key_value(self.bucket)
            except BucketNotFoundError:
                self._kv = await js.create_key_value(bucket=self.bucket, history=1, ttl=self.ttl_s, replicas=replicas)
        return self._kv

    async def acquire(self, stop: asyncio.Event, replicas: int = 1) -> bool:
        """Wait until this replica holds the lease (True) or ``stop`` is set (False)."""
        retry_s = max(self.ttl_s / 10, 0.1)
        waiting_logged = False
        while not stop.is_set():
            try:
                kv = await self._open(replicas)
                self.revision = await kv.create(self.key, self.holder.encode())
                log.info("lease taken: this replica subscribes and publishes", bucket=self.bucket, key=self.key,
                         holder=self.holder)
                return True
            except KeyWrongLastSequenceError:
                if not waiting_logged:
                    log.info("standing by: another replica holds the lease", bucket=self.bucket, key=self.key)
                    waiting_logged = True
            except Exception as exc:  # NATS unreachable: keep trying
                log.warning("lease not reachable; retrying", bucket=self.bucket, error=type(exc).__name__)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), retry_s)
        return False

    async def keep(self, lost: asyncio.Event) -> None:
        """Renew every third of the TTL; set ``lost`` when the lease can no longer be held."""
        assert self._kv is not None
        renewed = time.monotonic()
        while True:
            await asyncio.sleep(self.ttl_s / 3)
            try:
                self.revision = await self._kv.update(self.key, self.holder.encode(), last=self.revision)
                renewed = time.monotonic()
            except KeyWrongLastSequenceError:
                log.error("lease taken over by another replica; stopping", bucket=self.bucket, key=self.key)
                lost.set()
                return
            except Exception as exc:
                if time.monotonic() - renewed >= self.ttl_s:
                    log.error("lease not renewed within its TTL; stopping", bucket=self.bucket, key=self.key,
                              error=type(exc).__name__)
                    lost.set()
                    return

    async def release(self) -> None:
        """Hand the lease over at once (a stand-by takes it on its next retry)."""
        if self._kv is not None and self.revision is not None:
            with contextlib.suppress(Exception):
                await self._kv.delete(self.key, last=self.revision)
            self.revision = None
