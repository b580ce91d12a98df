"""Rate-limited, retrying JSON GETs with cursor pagination, for exchange REST APIs.

Kalshi meters REST per second with token buckets and answers ``429 {"error":"too many requests"}``
without ``Retry-After`` when over budget (protocols.md A6); the Basic tier allows about 20 reads/s.
So every request first takes a token from a local bucket (``requests_per_s``, configurable, small
burst), and 429, 5xx and connection errors are retried with capped, fully jittered backoff up to
``max_attempts``; other statuses fail at once with :class:`RestError`.

``connector/directory.py`` has an older, unthrottled copy of the retry loop (``_get_json``/``_paged``);
it can move onto :class:`RestClient` (same retry policy plus the rate limit).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

import aiohttp

from ingest_daemons.backoff import Backoff
from ingest_daemons.logs import get_logger
from ingest_daemons.secmaster.errors import RestError

log = get_logger("ssmd.rest")

DEFAULT_REQUESTS_PER_S = 10.0
DEFAULT_TIMEOUT_S = 15.0
DEFAULT_MAX_ATTEMPTS = 8
DEFAULT_RETRY_INITIAL_S = 0.25
DEFAULT_RETRY_MAX_S = 10.0


class RateLimiter:
    """Token bucket: ``rate`` tokens per second, at most ``burst`` saved up; ``acquire`` waits for one."""

    def __init__(self, rate: float, burst: float = 1.0) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0 requests per second")
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._last = time.monotonic()
        self._lock = asyncio.Lock()

    async def acquire(self) -> None:
        async with self._lock:  # FIFO: waiters are served in arrival order
            while True:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._last) * self.rate)
                self._last = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                await asyncio.sleep((1.0 - self._tokens) / self.rate)


@dataclass(frozen=True)
class RestOptions:
    requests_per_s: float = DEFAULT_REQUESTS_PER_S
    timeout_s: float = DEFAULT_TIMEOUT_S
    max_attempts: int = DEFAULT_MAX_ATTEMPTS
    retry_initial_s: float = DEFAULT_RETRY_INITIAL_S
    retry_max_s: float = DEFAULT_RETRY_MAX_S


class RestClient:
    """JSON GETs against one base URL; use as ``async with RestClient(url) as client``."""

    def __init__(self, base_url: str, options: RestOptions | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.options = options or RestOptions()
        self.limiter = RateLimiter(self.options.requests_per_s, burst=max(1.0, self.options.requests_per_s / 4))
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0  # every HTTP request sent, retries included
        self.retries = 0

    async def __aenter__(self) -> RestClient:
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.options.timeout_s))
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get_json(self, path: str, params: Mapping[str, str] | Sequence[tuple[str, str]] | None = None) -> Any:
        """GET ``base_url + path``; retried on 429/5xx/connection errors, RestError otherwise."""
        assert self._session is not None, "use RestClient as an async context manager"
        url = f"{self.base_url}/{path.lstrip('/')}"
        backoff = Backoff(initial_s=self.options.retry_initial_s, max_s=self.options.retry_max_s)
        for attempt in range(1, self.options.max_attempts + 1):
            await self.limiter.acquire()
            self.requests += 1
            status: int | None = None
            try:
                query = list(params.items()) if isinstance(params, Mapping) else list(params or [])
                async with self._session.get(url, params=query) as resp:
                    status = resp.status
                    if status == 200:
                        return await resp.json(content_type=None)
                    retryable = status == 429 or status >= 500
                    detail = f"HTTP {status}"
            except (aiohttp.ClientError, TimeoutError) as exc:
                retryable, detail = True, type(exc).__name__
            if not retryable:
                raise RestError(url, detail, status)
            if attempt == self.options.max_attempts:
                raise RestError(url, f"{detail} after {attempt} attempts", status)
            delay = backoff.next_delay()
            self.retries += 1
            log.warning("REST request failed; retrying", url=url, detail=detail, attempt=attempt,
                        retry_in_s=round(delay, 3))
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")

    async def pages(self, path: str, key: str, params: Mapping[str, str] | None = None
                    ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield each page's ``key`` list, following ``cursor`` until it comes back empty."""
        cursor = ""
        while True:
            query = {**(params or {}), **({"cursor": cursor} if cursor else {})}
            page = await self.get_json(path, query)
            if not isinstance(page, dict):
                raise RestError(f"{self.base_url}/{path.lstrip('/')}", "response is not a JSON object")
            items = page.get(key) or []
            yield [item for item in items if isinstance(item, dict)]
            cursor = page.get("cursor") or ""
            if not cursor:
                return

    async def offset_pages(self, path: str, params: Mapping[str, str] | None = None, limit: int = 100
                           ) -> AsyncIterator[list[dict[str, Any]]]:
        """Yield pages of a bare-array listing paged by ``limit``/``offset`` (Gamma, protocols §B3),
        until a page comes back shorter than ``limit``."""
        offset = 0
        while True:
            page = await self.get_json(path, {**(params or {}), "limit": str(limit), "offset": str(offset)})
            if not isinstance(page, list):
                raise RestError(f"{self.base_url}/{path.lstrip('/')}", "response is not a JSON array")
            yield [item for item in page if isinstance(item, dict)]
            if len(page) < limit:
                return
            offset += len(page)
