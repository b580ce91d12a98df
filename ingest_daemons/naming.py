"""Subject and stream names: ``{env}.{feed}.{category}.json.{type}.{ticker}`` and ``{ENV}_{FEED}_{CATEGORY}``.

Tickers are escaped reversibly into exactly one NATS token: ``[A-Za-z0-9_-]`` stays as it is and
every other UTF-8 byte becomes ``%XX`` (upper-case hex), so ``KXBTCD-26FEB1217-T72749.99`` is
``KXBTCD-26FEB1217-T72749%2E99`` and ``BTC/USD`` is ``BTC%2FUSD``. The empty string is ``%`` (a lone
``%`` never occurs in an escaped non-empty value). Decoding accepts only this canonical form, so
each string has exactly one token and each valid token exactly one string.

Categories are slugs (``Climate and Weather`` → ``climate_and_weather``): readable, not reversible;
the raw category lives in the secmaster.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

UNCATEGORIZED = "uncategorized"
LIFECYCLE = "lifecycle"  # the category token of a feed's unsharded lifecycle stream (Kalshi market_lifecycle_v2)
ENCODING = "json"
EMPTY_TOKEN = "%"
CDC_FEED = "secmaster"

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_ESCAPED = re.compile(r"%([0-9A-F]{2})")
_CANONICAL = re.compile(r"(?:[A-Za-z0-9_-]|%[0-9A-F]{2})+")
_SLUG_SEPARATORS = re.compile(r"[^a-z0-9]+")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class InvalidToken(ValueError):
    """A subject token that is not the canonical escape of any string."""


@lru_cache(maxsize=262_144)
def escape_token(value: str) -> str:
    """The one NATS token for ``value`` (cached: connectors escape the same tickers over and over)."""
    if value == "":
        return EMPTY_TOKEN
    if _UNSAFE.search(value) is None:
        return value
    out = []
    for char in value:
        if _UNSAFE.match(char) is None:
            out.append(char)
        else:
            out.extend(f"%{b:02X}" for b in char.encode("utf-8"))
    return "".join(out)


def unescape_token(token: str) -> str:
    """Inverse of :func:`escape_token`; raises :class:`InvalidToken` on anything it would not produce."""
    if token == EMPTY_TOKEN:
        return ""
    if not _CANONICAL.fullmatch(token):
        raise InvalidToken(f"not an escaped subject token: {token!r}")
    if "%" not in token:
        return token
    raw = bytearray()
    pos = 0
    for match in _ESCAPED.finditer(token):
        raw += token[pos : match.start()].encode("ascii")
        raw.append(int(match.group(1), 16))
        pos = match.end()
    raw += token[pos:].encode("ascii")
    try:
        decoded = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidToken(f"escaped bytes are not UTF-8: {token!r}") from exc
    if escape_token(decoded) != token:
        raise InvalidToken(f"not the canonical escape (a safe character was escaped): {token!r}")
    return decoded


def slug(name: str) -> str:
    """``Climate and Weather`` → ``climate_and_weather``; raises ValueError when nothing is left."""
    result = _SLUG_SEPARATORS.sub("_", name.casefold()).strip("_")
    if not result:
        raise ValueError(f"category {name!r} has no letters or digits to make a name from")
    return result


def _check_name(kind: str, value: str) -> str:
    if not _NAME.match(value):
        raise ValueError(f"{kind} {value!r} must match [a-z][a-z0-9_]*")
    return value


def stream_name(env: str, feed: str, category: str) -> str:
    """``PROD_KALSHI_ECONOMICS`` for (prod, kalshi, Economics)."""
    return f"{_check_name('env', env)}_{_check_name('feed', feed)}_{slug(category)}".upper()


def stream_subjects(env: str, feed: str, category: str) -> list[str]:
    return [f"{env}.{feed}.{slug(category)}.>"]


def cdc_stream_name(env: str) -> str:
    return f"{_check_name('env', env)}_SECMASTER_CDC".upper()


def cdc_subject(env: str, table: str, operation: str) -> str:
    """``dev.secmaster.cdc.markets.insert``."""
    return f"{env}.{CDC_FEED}.cdc.{_check_name('table', table)}.{_check_name('operation', operation)}"


@dataclass(frozen=True, slots=True)
class SubjectParts:
    env: str
    feed: str
    category: str
    message_type: str
    ticker: str


class SubjectBuilder:
    """Builds data subjects for one (env, feed); per-message work is one cached escape and a format."""

    __slots__ = ("_prefix", "env", "feed")

    def __init__(self, env: str, feed: str) -> None:
        self.env = _check_name("env", env)
        self.feed = _check_name("feed", feed)
        self._prefix = f"{env}.{feed}."

    def subject(self, category_slug: str, message_type: str, ticker: str) -> str:
        """``category_slug`` must already be a slug (see :func:`slug`); ``ticker`` is raw."""
        return f"{self._prefix}{category_slug}.{ENCODING}.{message_type}.{escape_token(ticker)}"

    def stream_name(self, category: str) -> str:
        return stream_name(self.env, self.feed, category)


def parse_subject(subject: str) -> SubjectParts:
    """Split a data subject back into its parts (the ticker unescaped)."""
    tokens = subject.split(".")
    if len(tokens) != 6 or tokens[3] != ENCODING:
        raise ValueError(f"not an ssmd data subject: {subject!r}")
    env, feed, category, _, message_type, ticker = tokens
    return SubjectParts(env, feed, category, message_type, unescape_token(ticker))
