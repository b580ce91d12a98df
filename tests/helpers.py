"""Small shared test helpers (no fixtures here; those live in tests/fixtures)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

import orjson


async def wait_until(
    predicate: Callable[[], bool], timeout: float = 5.0, what: str = "condition"  # noqa: ASYNC109 - poll deadline
) -> None:
    """Poll ``predicate`` until true; fail the test with ``what`` when the deadline passes."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)


def orjson_accepts(text: bytes) -> bool:
    """orjson's verdict on ``text``: the reference every faster JSON check must agree with."""
    try:
        orjson.loads(text)
    except orjson.JSONDecodeError:
        return False
    return True
