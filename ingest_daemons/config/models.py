"""Typed models of the exchange config files.

Every model forbids unknown keys, so a typo is an error naming the key rather than a silently
ignored setting. Cross-file rules (an environment naming a feed that does not exist, a category
the feed does not know) live in :mod:`ingest_daemons.config.loader`.
"""

from __future__ import annotations

import re
from datetime import date, timedelta
from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from ingest_daemons.config.units import parse_duration, parse_size

BOTH_FILTERS = (
    "both `categories` and `excludeCategories` are set; use one (an allow-list or a deny-list, never both)"
)

Duration = Annotated[timedelta, BeforeValidator(parse_duration)]
ByteSize = Annotated[int, BeforeValidator(parse_size)]
Name = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=32)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, populate_by_name=True)


# ----------------------------------------------------------------------------- feeds


class MarketEndpoint(_Model):
    ws: str
    rest: str | None = None


class Endpoint(_Model):
    ws: str
    rest: str | None = None
    # Other markets of the feed on sockets of their own (Kraken: `futures` beside the spot socket above),
    # each run by its own connector process (`ssmd connector --market NAME`).
    markets: dict[str, MarketEndpoint] = Field(default_factory=dict)


class AuthConfig(_Model):
    method: Literal["none", "rsa_pss_sha256"]
    key_id_env: str | None = None
    private_key_path_env: str | None = None

    @model_validator(mode="after")
    def _needs_env_names(self) -> AuthConfig:
        if self.method == "rsa_pss_sha256" and not (self.key_id_env and self.private_key_path_env):
            raise ValueError("rsa_pss_sha256 auth needs key_id_env and private_key_path_env")
        return self


class FeedLimits(_Model):
    markets_per_subscription: int = Field(gt=0)
    markets_per_connection: int = Field(gt=0)
    connections: int = Field(gt=0)
    commands_per_second: float = Field(gt=0)
    # Time between two socket opens of one connector (its connections open one after another, and so do
    # their reconnects after a shared outage); 0 opens them all at once.
    connection_stagger: Duration = timedelta(0)


# Where a channel runs: `all` = one subscription with no market list on the unsharded
# `ssmd connector --all-markets` (the exchange sends every market, new ones included); `shard` = per
# market, on the sharded connectors.
Scope = Literal["all", "shard"]


class ChannelsConfig(_Model):
    available: list[str] = Field(min_length=1)
    default: list[str] = Field(min_length=1)
    # channel -> scope; a channel not listed runs per shard (the exchange may require a market list).
    scope: dict[str, Scope] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _default_is_available(self) -> ChannelsConfig:
        unknown = sorted(set(self.default) - set(self.available))
        if unknown:
            raise ValueError(f"default channels {unknown} are not in available {self.available}")
        unknown = sorted(set(self.scope) - set(self.available))
        if unknown:
            raise ValueError(f"scope names channels {unknown} that are not in available {self.available}")
        return self


class MessageTypeConfig(_Model):
    """How to find a message's market and sequence: dotted paths into the frame (``msg.market_ticker``)."""

    channel: str
    subject_type: Name
    ticker_field: str
    sequence_field: str | None = None


class FeedConfig(_Model):
    name: Name
    display_name: str
    protocol: str
    endpoints: dict[str, Endpoint] = Field(min_length=1)
    auth: AuthConfig
    limits: FeedLimits
    channels: ChannelsConfig
    categories: list[str] = Field(default_factory=list)
    # A channel carrying every market's lifecycle with no market filter (Kalshi: market_lifecycle_v2):
    # run by one unsharded connector (`ssmd connector --lifecycle`) into its own {ENV}_{FEED}_LIFECYCLE stream.
    lifecycle_channel: str | None = None
    # Message types that announce or finish markets on the market-data channels themselves (Polymarket's
    # new_market, market_resolved): whichever connection receives them stores them in {ENV}_{FEED}_LIFECYCLE,
    # where `ssmd lifecycle --feed F` applies them to the secmaster.
    lifecycle_types: list[str] = Field(default_factory=list)
    message_types: dict[str, MessageTypeConfig] = Field(min_length=1)
    # Venues that tag events instead of naming a category (Polymarket's Gamma tags): tag slug or
    # label (case-insensitive) → one of `categories`. An event takes the category of its first
    # mapped tag, in the event's own tag order; no mapped tag leaves it uncategorised.
    category_tags: dict[str, str] = Field(default_factory=dict)
    # Order-book depth to subscribe where the venue takes one (Kraken spot: 10, 25, 100, 500 or 1000).
    book_depth: int | None = Field(default=None, gt=0)

    @model_validator(mode="after")
    def _lifecycle_channel_is_available(self) -> FeedConfig:
        if self.lifecycle_channel is not None and self.lifecycle_channel not in self.channels.available:
            raise ValueError(f"lifecycle_channel {self.lifecycle_channel!r} is not in channels.available")
        return self

    @model_validator(mode="after")
    def _lifecycle_types_are_message_types(self) -> FeedConfig:
        unknown = sorted(set(self.lifecycle_types) - set(self.message_types))
        if unknown:
            raise ValueError(f"lifecycle_types {unknown} are not in message_types {sorted(self.message_types)}")
        return self

    @property
    def has_lifecycle_stream(self) -> bool:
        """Whether the feed stores anything in {ENV}_{FEED}_LIFECYCLE (a lifecycle channel or lifecycle types)."""
        return self.lifecycle_channel is not None or bool(self.lifecycle_types)

    @model_validator(mode="after")
    def _category_tags_name_categories(self) -> FeedConfig:
        unknown = sorted({c for c in self.category_tags.values() if c not in self.categories})
        if unknown:
            raise ValueError(f"category_tags map to {unknown}, which are not in categories {self.categories}")
        folded = [t.casefold() for t in self.category_tags]
        if len(set(folded)) != len(folded):
            raise ValueError("category_tags lists a tag twice (tags match case-insensitively)")
        return self

    def category_for_tags(self, tags: list[str]) -> str | None:
        """The category of the first of ``tags`` that ``category_tags`` maps, else None."""
        mapping = {t.casefold(): c for t, c in self.category_tags.items()}
        for tag in tags:
            found = mapping.get(tag.casefold())
            if found is not None:
                return found
        return None


# ----------------------------------------------------------------------------- environments

Storage = Literal["file", "memory"]
Compression = Literal["none", "s2"]


class StreamLimits(_Model):
    """JetStream limits for every stream of an environment (feeds may override single fields)."""

    max_age: Duration = timedelta(days=7)
    max_bytes: ByteSize = -1
    storage: Storage = "file"
    replicas: int = Field(default=1, ge=1, le=5)
    duplicate_window: Duration = timedelta(minutes=2)
    compression: Compression = "none"

    @model_validator(mode="after")
    def _window_within_age(self) -> StreamLimits:
        if self.max_age and self.duplicate_window > self.max_age:
            raise ValueError("duplicate_window must not be longer than max_age")
        return self


class StreamLimitsOverride(_Model):
    max_age: Duration | None = None
    max_bytes: ByteSize | None = None
    storage: Storage | None = None
    replicas: int | None = Field(default=None, ge=1, le=5)
    duplicate_window: Duration | None = None
    compression: Compression | None = None

    def apply_to(self, base: StreamLimits) -> StreamLimits:
        changes = {k: v for k, v in self.model_dump().items() if v is not None}
        return base.model_copy(update=changes)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_CLOCK_RE = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
# Streams that carry no market data of their own by default: judged only when configured.
UNJUDGED_BY_DEFAULT = ("uncategorized", "lifecycle")


def _minutes(value: str) -> int:
    match = _CLOCK_RE.match(value)
    if match is None:
        raise ValueError(f"bad time {value!r}: expected HH:MM (UTC, 00:00-23:59)")
    return int(match.group(1)) * 60 + int(match.group(2))


class QuietHours(_Model):
    """A daily UTC period when a feed is expected to be silent (``end`` before ``start`` wraps midnight)."""

    start: str
    end: str
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None

    @model_validator(mode="after")
    def _valid_clock(self) -> QuietHours:
        if _minutes(self.start) == _minutes(self.end):
            raise ValueError(f"quiet hours {self.start}-{self.end} are empty; start and end must differ")
        return self

    @property
    def start_minute(self) -> int:
        return _minutes(self.start)

    @property
    def end_minute(self) -> int:
        return _minutes(self.end)


class FreshnessConfig(_Model):
    """How long a feed's streams may go without a message before that is an outage.

    ``max_silence`` applies to every stream of the feed; ``streams`` overrides it per stream
    (category slug, ``uncategorized`` or ``lifecycle``), ``null`` meaning "not judged". The
    uncategorized and lifecycle streams carry no regular data and are not judged unless listed.
    """

    max_silence: Duration | None = timedelta(minutes=15)
    quiet_hours: list[QuietHours] = Field(default_factory=list)
    streams: dict[str, Duration | None] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _positive(self) -> FreshnessConfig:
        overrides = [(f"streams.{k}", v) for k, v in self.streams.items()]
        for where, value in [("max_silence", self.max_silence), *overrides]:
            if value is not None and value <= timedelta(0):
                raise ValueError(f"{where} must be longer than 0s (or null: not judged)")
        return self

    def threshold_for(self, stream_key: str) -> timedelta | None:
        """The silence allowed on one stream (key: category slug, ``uncategorized``, ``lifecycle``)."""
        if stream_key in self.streams:
            return self.streams[stream_key]
        if stream_key in UNJUDGED_BY_DEFAULT:
            return None
        return self.max_silence


class EnvironmentFeedConfig(_Model):
    """One feed as an environment runs it."""

    enabled: bool = True
    categories: list[str] | None = None
    exclude_categories: list[str] | None = Field(default=None, alias="excludeCategories")
    channels: list[str] | None = None
    # Overrides the feed's `channels.scope` per channel (checked against the feed's channels by the loader).
    channel_scope: dict[str, Scope] = Field(default_factory=dict)
    shard_size: int = Field(default=500, gt=0)
    endpoint: Endpoint | None = None
    streams: StreamLimitsOverride = Field(default_factory=StreamLimitsOverride)
    freshness: FreshnessConfig = Field(default_factory=FreshnessConfig)

    @model_validator(mode="after")
    def _one_filter(self) -> EnvironmentFeedConfig:
        if self.categories is not None and self.exclude_categories is not None:
            raise ValueError(BOTH_FILTERS)
        return self

    def category_passes(self, category: str | None) -> bool:
        """Whether markets of ``category`` are captured (case-insensitive; unknown passes a deny-list)."""
        if self.categories is not None:
            return category is not None and category.casefold() in {c.casefold() for c in self.categories}
        if self.exclude_categories is not None and category is not None:
            return category.casefold() not in {c.casefold() for c in self.exclude_categories}
        return True


FIRST_RUN = "first_run"


def _start_date(value: object) -> str:
    """``YYYY-MM-DD`` (a real date) or ``first_run``; YAML may hand over a date object."""
    if isinstance(value, date):
        value = value.isoformat()
    if not isinstance(value, str):
        raise ValueError(f"bad start_date {value!r}: expected a date like 2026-01-01 or {FIRST_RUN}")
    if value == FIRST_RUN:
        return value
    try:
        parsed = date.fromisoformat(value)
    except ValueError:
        parsed = None
    if parsed is None or len(value) != 10:
        raise ValueError(f"bad start_date {value!r}: expected a date like 2026-01-01 or {FIRST_RUN}")
    return value


class ArchiveConfig(_Model):
    path: str = "archive"
    # First day of the archive's daily partitions; `first_run`: the day this data dir first served
    # the environment (recorded under the data dir, see ResolvedEnvironment.archive_start_date).
    start_date: Annotated[str, BeforeValidator(_start_date)] = FIRST_RUN


class GcsConfig(_Model):
    bucket: str | None = None
    prefix: str = "ssmd"


class NatsTlsConfig(_Model):
    """Client TLS files (paths); ``NATS_CA``/``NATS_CERT``/``NATS_KEY`` override them."""

    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    server_name: str | None = Field(default=None, alias="serverName")
    handshake_first: bool = Field(default=False, alias="handshakeFirst")


class NatsConfig(_Model):
    """How the environment's clients authenticate to NATS. Only file paths and a user name: passwords,
    tokens and seeds come from the variables (``NATS_PASSWORD``, ``NATS_TOKEN``, ``NATS_NKEY``)."""

    creds: str | None = None
    nkey: str | None = None  # a seed file
    user: str | None = None
    tls: NatsTlsConfig = Field(default_factory=NatsTlsConfig)


class EnvironmentConfig(_Model):
    name: Name
    nats_url: str = "nats://127.0.0.1:4222"
    nats: NatsConfig = Field(default_factory=NatsConfig)
    endpoint_set: str = "prod"
    archive: ArchiveConfig = Field(default_factory=ArchiveConfig)
    gcs: GcsConfig = Field(default_factory=GcsConfig)
    streams: StreamLimits = Field(default_factory=StreamLimits)
    feeds: dict[str, EnvironmentFeedConfig] = Field(default_factory=dict)
