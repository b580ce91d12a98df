"""Is a payload JSON, by exactly ``orjson.loads``' verdict, without building its Python objects?

The archive and the Polymarket connector judge every message "valid JSON or not" (a frame that is
not is kept as text, or published as ``unparsed``), and that verdict has always been orjson's. Parsing
into dicts and lists only to throw them away was about half of the archive's per-message loop.

orjson parses with yyjson; the ``yyjson`` package reads the same grammar into a C document that
Python never sees (one object per payload, its values fetched on demand with JSON pointers). Its
verdict agrees with orjson's on every case ``tests/ingest_daemons/test_json_check.py`` tries (the
recorded samples, truncations, trailing bytes, invalid UTF-8 and encoded surrogates, lone and
paired ``\\u`` surrogates, control characters, NaN/Infinity, numbers that overflow a double, big
integers, duplicate keys, BOM, whitespace) but one: orjson refuses nesting deeper than
:data:`MAX_DEPTH` levels and yyjson has no limit. A text shorter than :data:`SHALLOW` bytes cannot
nest that deep, and a longer one with at most :data:`MAX_DEPTH` opening brackets (counting those
inside strings: a safe over-count) cannot either; anything else is handed to orjson itself.

Why not ``msgspec`` (decoding into a ``Struct`` of the few fields needed, or into ``msgspec.Raw``):
its decoder *skips* the values it does not keep without checking them as it checks decoded ones:
skipped strings are not UTF-8 validated and skipped numbers are not range-checked, so
``{"a":"\\xff"}`` and ``{"a":1e400}`` pass where orjson refuses them (the test pins this). Once a
text is known valid, its skipping is exact, which is how the Polymarket adapter uses it.
"""

from __future__ import annotations

import re
from typing import Any, Final

import orjson
import yyjson

MAX_DEPTH: Final = 1024  # orjson refuses a document nested deeper than this ("depth limit exceeded")
SHALLOW: Final = 2 * MAX_DEPTH + 2  # fewer bytes than this cannot open and close MAX_DEPTH + 1 levels

Document: Any = yyjson.Document  # the package has no type hints


LINE_SHALLOW: Final = 2 * MAX_DEPTH  # fewer bytes than this cannot open and close MAX_DEPTH levels
_STRUCTURE: Final = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]', re.S)  # a whole string, or one bracket


def too_deep_for_a_line(text: bytes) -> bool:
    """True when ``text`` nests :data:`MAX_DEPTH` levels or more: orjson reads it, but wrapped in one
    more object (an archive line's envelope) it would not, so the line could never be read back.
    Brackets inside strings do not count (on a valid text every string is closed)."""
    if len(text) < LINE_SHALLOW or text.count(b"[") + text.count(b"{") < MAX_DEPTH:
        return False
    depth = 0
    for token in _STRUCTURE.finditer(text):
        c = token.group()
        if c == b"[" or c == b"{":
            depth += 1
            if depth >= MAX_DEPTH:
                return True
        elif c == b"]" or c == b"}":
            depth -= 1
    return False


def too_many_brackets(text: bytes) -> bool:
    """More opening brackets than :data:`MAX_DEPTH` (inside strings too): it *may* nest too deep."""
    return text.count(b"[") + text.count(b"{") > MAX_DEPTH


def may_be_too_deep(text: bytes) -> bool:
    """False when ``text`` surely nests at most :data:`MAX_DEPTH` levels (the usual case, cheaply)."""
    return len(text) >= SHALLOW and too_many_brackets(text)


def document(text: bytes) -> Any:
    """``text`` parsed into a ``yyjson.Document`` (values stay in C); raises ``ValueError`` exactly
    when ``orjson.loads`` would.

    ``None``: valid JSON that yyjson refused, which only orjson can read (no such text is known;
    the caller then parses with orjson, as before). Callers on a hot path inline the two steps
    (the depth check, then ``Document``); this is the reference they follow.
    """
    if may_be_too_deep(text):
        orjson.loads(text)  # orjson's own verdict on depth (raises orjson.JSONDecodeError)
    try:
        return Document(text)
    except ValueError:
        orjson.loads(text)  # orjson's verdict stands (raises when it refuses too)
        return None


def is_json(text: bytes) -> bool:
    """``orjson.loads(text)`` would succeed."""
    try:
        document(text)
    except ValueError:
        return False
    return True
