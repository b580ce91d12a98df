"""Where things are and which environment runs: YAML values with the environment variables on top.

Precedence, highest first: explicit argument (CLI flag), environment variable, YAML, built-in default.
``NATS_URL`` overrides the environment's ``nats_url`` (credentials and TLS: ``NATS_*``, see
:mod:`ingest_daemons.nats_settings`); ``SSMD_ENV`` picks the environment;
``SSMD_DATA_DIR`` is the root of all local state (default ``./var``); ``SSMD_EXCHANGES_DIR`` is the
config folder (default ``./exchanges``, else the one shipped beside the package).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path

from ingest_daemons.config.loader import ExchangeConfig, load_exchanges
from ingest_daemons.config.models import (
    FIRST_RUN,
    Endpoint,
    EnvironmentConfig,
    EnvironmentFeedConfig,
    FeedConfig,
    StreamLimits,
)
from ingest_daemons.nats_settings import NatsSettings

ARCHIVE_START_ENV = "SSMD_ARCHIVE_START"  # overrides archive.start_date (YYYY-MM-DD)
FIRST_RUN_DIR = "first_run"
DEFAULT_ENV = "dev"
DEFAULT_DATA_DIR = "var"
_PACKAGED_EXCHANGES = Path(__file__).resolve().parents[2] / "exchanges"


@dataclass(frozen=True)
class Settings:
    exchanges_dir: Path
    data_dir: Path
    env_name: str

    @classmethod
    def from_env(
        cls,
        exchanges_dir: str | os.PathLike[str] | None = None,
        data_dir: str | os.PathLike[str] | None = None,
        env_name: str | None = None,
    ) -> Settings:
        if exchanges_dir is None:
            exchanges_dir = os.environ.get("SSMD_EXCHANGES_DIR") or (
                "exchanges" if Path("exchanges").is_dir() else _PACKAGED_EXCHANGES
            )
        data = Path(data_dir or os.environ.get("SSMD_DATA_DIR") or DEFAULT_DATA_DIR)
        return cls(
            exchanges_dir=Path(exchanges_dir),
            data_dir=data.resolve(),
            env_name=env_name or os.environ.get("SSMD_ENV") or DEFAULT_ENV,
        )


@dataclass(frozen=True)
class ResolvedFeed:
    """A feed as one environment runs it: endpoint chosen, limits merged, filter attached."""

    feed: FeedConfig
    settings: EnvironmentFeedConfig
    endpoint: Endpoint
    stream_limits: StreamLimits

    @property
    def name(self) -> str:
        return self.feed.name

    @property
    def channels(self) -> list[str]:
        return list(self.settings.channels or self.feed.channels.default)

    def scope_of(self, channel: str) -> str:
        """``all`` (no market list, unsharded) or ``shard``: the environment's override, else the feed's."""
        return self.settings.channel_scope.get(channel) or self.feed.channels.scope.get(channel, "shard")

    @property
    def all_market_channels(self) -> list[str]:
        """Channels of :attr:`channels` the unsharded ``--all-markets`` connector runs."""
        return [c for c in self.channels if self.scope_of(c) == "all"]

    @property
    def shard_channels(self) -> list[str]:
        """Channels of :attr:`channels` the sharded connectors run, per market."""
        return [c for c in self.channels if self.scope_of(c) == "shard"]

    def stream_categories(self) -> list[str]:
        """Categories that get a stream: the allow-list, or the feed's known ones minus the deny-list."""
        if self.settings.categories is not None:
            return list(self.settings.categories)
        return [c for c in self.feed.categories if self.settings.category_passes(c)]


@dataclass(frozen=True)
class ResolvedEnvironment:
    config: EnvironmentConfig
    exchanges: ExchangeConfig
    settings: Settings
    nats_url: str
    feeds: dict[str, ResolvedFeed]
    nats: NatsSettings

    def nats_settings(self, url: str | None = None) -> NatsSettings:
        """The environment's NATS settings, with another server list where a CLI flag gives one."""
        return self.nats if url is None else replace(NatsSettings.parse(url), creds_file=self.nats.creds_file,
                                                     nkey_seed=self.nats.nkey_seed, user=self.nats.user,
                                                     password=self.nats.password, token=self.nats.token,
                                                     tls=self.nats.tls)

    @property
    def name(self) -> str:
        return self.config.name

    @property
    def data_dir(self) -> Path:
        return self.settings.data_dir

    @property
    def archive_root(self) -> Path:
        path = Path(self.config.archive.path)
        return path if path.is_absolute() else self.settings.data_dir / path

    def archive_start_date(self, today: datetime | None = None) -> str:
        """First day (``YYYY-MM-DD``) of the archive's partitions.

        ``$SSMD_ARCHIVE_START`` overrides ``archive.start_date``. ``first_run`` is the UTC day this
        data dir first asked, written once to ``DATA_DIR/first_run/{env}`` and read back by every
        later process (Dagster's webserver, daemon and runs must agree on the partitions), so it
        needs a data dir that persists and is shared; a deployment without one sets a date.
        """
        override = os.environ.get(ARCHIVE_START_ENV)
        if override:
            return _checked_date(override, ARCHIVE_START_ENV)
        configured = self.config.archive.start_date
        if configured != FIRST_RUN:
            return configured
        record = self.settings.data_dir / FIRST_RUN_DIR / self.name
        if not record.exists():
            day = (today or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%d")
            record.parent.mkdir(parents=True, exist_ok=True)
            temp = record.with_name(f".{record.name}.{os.getpid()}")
            temp.write_text(day + "\n")
            try:
                os.link(temp, record)  # atomic and exclusive: the first writer wins, whole
            except FileExistsError:
                pass
            finally:
                temp.unlink()
        return _checked_date(record.read_text().strip(), str(record))


def _checked_date(value: str, where: str) -> str:
    try:
        datetime.strptime(value, "%Y-%m-%d")
    except ValueError:
        raise ValueError(f"{where}: {value!r} is not a date like 2026-01-01") from None
    return value


def resolve_environment(settings: Settings | None = None, env_name: str | None = None) -> ResolvedEnvironment:
    """Load the config folder and resolve one environment (raises ConfigError on any problem)."""
    settings = settings or Settings.from_env()
    exchanges = load_exchanges(settings.exchanges_dir)
    env = exchanges.environment(env_name or settings.env_name)
    feeds = {}
    for name, feed_env in env.feeds.items():
        if not feed_env.enabled:
            continue
        feed = exchanges.feeds[name]
        endpoint = feed_env.endpoint or feed.endpoints[env.endpoint_set]
        feeds[name] = ResolvedFeed(feed, feed_env, endpoint, feed_env.streams.apply_to(env.streams))
    nats_yaml = env.nats.model_dump(exclude_none=True)
    nats_yaml["tls"] = env.nats.tls.model_dump(exclude_none=True)
    nats = NatsSettings.from_sources({**nats_yaml, "url": env.nats_url})
    return ResolvedEnvironment(
        config=env,
        exchanges=exchanges,
        settings=settings,
        nats_url=os.environ.get("NATS_URL") or env.nats_url,
        feeds=feeds,
        nats=nats,
    )
