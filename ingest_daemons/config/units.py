"""Durations and byte sizes as people write them in YAML (``7d``, ``2m``, ``10GiB``).

Parsed once at the edge into ``timedelta`` / ``int`` bytes; converted to NATS units only when
talking to NATS.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

_DURATION_RE = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_DURATION_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGT]i?B|B)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "B": 1,
    "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
    "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40,
}


def parse_duration(value: Any) -> timedelta:
    """``"90s"``, ``"2m"``, ``"1h30m"``, ``"7d"``, ``"500ms"`` or a number of seconds → timedelta."""
    if isinstance(value, timedelta):
        return value
    if isinstance(value, bool):
        raise ValueError(f"bad duration {value!r}: expected e.g. 30s, 2m, 1h, 7d")
    if isinstance(value, int | float):
        if value < 0:
            raise ValueError(f"bad duration {value!r}: must not be negative")
        return timedelta(seconds=value)
    if not isinstance(value, str):
        raise ValueError(f"bad duration {value!r}: expected e.g. 30s, 2m, 1h, 7d")
    text = value.strip().lower()
    pos, total = 0, 0.0
    for match in _DURATION_RE.finditer(text):
        if match.start() != pos:
            break
        total += float(match.group(1)) * _DURATION_UNITS[match.group(2)]
        pos = match.end()
    if pos != len(text) or not text:
        raise ValueError(f"bad duration {value!r}: expected e.g. 30s, 2m, 1h, 7d (units ms s m h d w)")
    return timedelta(seconds=total)


def parse_size(value: Any) -> int:
    """``"10GiB"``, ``"500MB"``, ``1048576`` → bytes; ``-1`` or ``"unlimited"`` → -1 (no limit)."""
    if isinstance(value, bool):
        raise ValueError(f"bad size {value!r}: expected e.g. 512MiB, 10GiB or -1")
    if isinstance(value, int):
        if value < -1:
            raise ValueError(f"bad size {value!r}: must be -1 (unlimited) or positive")
        return value
    if isinstance(value, str):
        if value.strip().lower() in {"unlimited", "-1"}:
            return -1
        match = _SIZE_RE.match(value)
        if match:
            unit = (match.group(2) or "B").upper()
            return int(float(match.group(1)) * _SIZE_UNITS[unit])
    raise ValueError(f"bad size {value!r}: expected e.g. 512MiB, 10GiB or -1")


def format_duration(value: timedelta) -> str:
    """Shortest exact rendering, for plans and tables (``604800s`` → ``7d``)."""
    seconds = value.total_seconds()
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60), ("s", 1)):
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return f"{seconds:g}s"


def format_size(value: int) -> str:
    if value < 0:
        return "unlimited"
    for unit in ("TiB", "GiB", "MiB", "KiB"):
        size = _SIZE_UNITS[unit.upper()]
        if value >= size and value % size == 0:
            return f"{value // size}{unit}"
    return f"{value}B"
