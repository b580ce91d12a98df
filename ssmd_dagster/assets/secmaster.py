"""Secmaster sync as assets: ``secmaster/{env}/{feed}``, one REST sync into PostgreSQL per run, hourly.

The same sync as ``ssmd secmaster sync`` (``ingest_daemons.secmaster.kalshi_sync``): paginated,
rate-limited, no-op updates skipped, so an hourly run that finds nothing new writes nothing and
emits no CDC. It is the safety net behind the real-time lifecycle consumer (design.md, Secmaster
and CDC). A materialisation records inserted/updated/unchanged/settled as numbers (the UI plots
them run over run: a sudden burst of inserts or settlements is visible at a glance) and a
per-table breakdown.

Database: the ``secmaster_database`` resource's URL, else ``$SSMD_SYNC_DATABASE_URL`` (the sync
writer's own least-privilege user), else ``$DATABASE_URL``, else the embedded PostgreSQL under the
data directory (as its ``ssmd_sync`` login user), started or adopted for the run and left to the
last ssmd process using it (``secmaster_database()``). REST endpoint: the feed's endpoint in the
environment, or ``rest_url`` in run config.
"""

# No `from __future__ import annotations`: Dagster reads config and resource types from the
# signatures of the decorated functions at definition time.

import contextlib
from collections.abc import Callable, Coroutine, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from dagster import (
    AssetExecutionContext,
    AssetKey,
    AssetsDefinition,
    AssetSelection,
    Config,
    ConfigurableResource,
    DefaultScheduleStatus,
    Failure,
    MaterializeResult,
    MetadataValue,
    ScheduleDefinition,
    asset,
)
from pydantic import Field

from ingest_daemons.config import ResolvedEnvironment, Settings
from ingest_daemons.secmaster.db_roles import ServiceRole
from ingest_daemons.secmaster.errors import MigrationError, PostgresStartError, RestError
from ingest_daemons.secmaster.kalshi_sync import SyncOptions, SyncReport, sync_kalshi
from ingest_daemons.secmaster.kraken_rows import SPOT
from ingest_daemons.secmaster.kraken_sync import KrakenSyncOptions, kraken_rest_urls, sync_kraken
from ingest_daemons.secmaster.postgres import safe_url, secmaster_database
from ingest_daemons.secmaster.rest import DEFAULT_REQUESTS_PER_S, RestOptions
from ssmd_dagster._async import run_coroutine
from ssmd_dagster.resources import SsmdConfigResource

SECMASTER_GROUP = "secmaster"
# Minute 17, not :00: the top of the hour is when exchanges and everyone else's cron jobs hit the API.
HOURLY_CRON = "17 * * * *"

Syncer = Callable[[str, str, SyncOptions], Coroutine[Any, Any, SyncReport]]
SYNCERS: Mapping[str, Syncer] = {"kalshi": sync_kalshi}
# Kraken: its own sync (spot AssetPairs and futures instruments, gone symbols delisted); it is the
# discovery path of a venue with no lifecycle channel, so the hourly run is what lists a new pair.
KRAKEN = "kraken"


class SecmasterDatabaseResource(ConfigurableResource):  # type: ignore[type-arg]
    """The secmaster's PostgreSQL as the sync writer: ``url``, else ``$SSMD_SYNC_DATABASE_URL``, else
    ``$DATABASE_URL``, else the embedded server."""

    url: str | None = Field(default=None, description="PostgreSQL URL; default $DATABASE_URL, else embedded")
    data_dir: str | None = Field(
        default=None, description="root of the embedded server's state (DATA_DIR/postgres); default $SSMD_DATA_DIR"
    )

    @contextlib.contextmanager
    def database_url(self) -> Iterator[str]:
        """The URL for the life of the block (an embedded server is released on exit)."""
        with secmaster_database(Settings.from_env(data_dir=self.data_dir), self.url, role=ServiceRole.SYNC) as url:
            yield url


def secmaster_resources(env: ResolvedEnvironment) -> dict[str, ConfigurableResource]:  # type: ignore[type-arg]
    """The database resource pinned to the data directory the definitions were built for."""
    return {"secmaster_database": SecmasterDatabaseResource(data_dir=str(env.data_dir))}


class SecmasterSyncConfig(Config):
    requests_per_s: float = Field(
        default=DEFAULT_REQUESTS_PER_S, gt=0, description="REST requests per second (Kalshi Basic allows ~20 reads/s)"
    )
    market_status: str | None = Field(
        default=None, description="only markets with this REST filter status (open, closed, settled, ...)"
    )
    rest_url: str | None = Field(default=None, description="override the feed's REST endpoint")
    market: str | None = Field(default=None, description="Kraken: sync only spot or futures (rest_url: that market's)")


@dataclass(frozen=True)
class SecmasterTarget:
    env: str
    feed: str

    @property
    def asset_key(self) -> AssetKey:
        return AssetKey(["secmaster", self.env, self.feed])


def secmaster_targets(env: ResolvedEnvironment) -> list[SecmasterTarget]:
    """Enabled feeds that have a REST sync."""
    return [SecmasterTarget(env.name, feed) for feed in env.feeds if feed in SYNCERS or feed == KRAKEN]


def report_metadata(report: SyncReport, database_url: str, rest_url: str) -> dict[str, Any]:
    rows = ["| table | inserted | updated | unchanged | settled |", "|---|---:|---:|---:|---:|"]
    rows += [
        f"| {name} | {c.inserted} | {c.updated} | {c.unchanged} | {c.settled} |" for name, c in report.tables.items()
    ]
    return {
        "inserted": report.inserted,
        "updated": report.updated,
        "unchanged": report.unchanged,
        "settled": report.settled,
        "skipped": report.skipped,
        "requests": report.requests,
        "retries": report.retries,
        "seconds": round(report.seconds, 3),
        "tables": MetadataValue.md("\n".join(rows)),
        "database": safe_url(database_url),
        "rest_url": MetadataValue.url(rest_url),
    }


def _sync_kraken(env: ResolvedEnvironment, url: str, config: "SecmasterSyncConfig") -> tuple[SyncReport, str]:
    """(report, the REST bases synced) of both Kraken markets, or of ``config.market`` only (spot when
    only ``config.rest_url`` is given)."""
    market = config.market
    if config.rest_url is not None:
        urls = kraken_rest_urls(env, market or SPOT, config.rest_url)
    else:
        urls = kraken_rest_urls(env, market, None)
    options = KrakenSyncOptions(feed=KRAKEN, rest=RestOptions(requests_per_s=config.requests_per_s))
    category_of = env.exchanges.feeds[KRAKEN].category_for_tags
    return run_coroutine(sync_kraken(url, urls, category_of, options)), " ".join(urls.values())


def build_secmaster_asset(target: SecmasterTarget) -> AssetsDefinition:
    if target.feed == KRAKEN:
        return _build_kraken_asset(target)
    sync = SYNCERS[target.feed]

    @asset(
        key=target.asset_key,
        group_name=SECMASTER_GROUP,
        kinds={"postgres"},
        description=(
            f"Series, events and markets of {target.feed} in the secmaster (PostgreSQL), synced from the feed's "
            "REST API. Unchanged rows are not written, so a sync that finds nothing new emits no CDC."
        ),
    )
    def _secmaster(
        context: AssetExecutionContext,
        config: SecmasterSyncConfig,
        ssmd_config: SsmdConfigResource,
        secmaster_database: SecmasterDatabaseResource,
    ) -> MaterializeResult[None]:
        rest_url = config.rest_url
        if rest_url is None:
            feed = ssmd_config.environment().feeds.get(target.feed)
            rest_url = feed.endpoint.rest if feed is not None else None
        if not rest_url:
            raise Failure(description=f"feed {target.feed!r} has no REST endpoint in {target.env}; set rest_url")
        options = SyncOptions(feed=target.feed, rest=RestOptions(requests_per_s=config.requests_per_s),
                              market_status=config.market_status)
        try:
            with secmaster_database.database_url() as url:
                context.log.info(f"syncing {target.feed} from {rest_url} into {safe_url(url)}")
                report = run_coroutine(sync(url, rest_url, options))
        except (RestError, MigrationError, PostgresStartError) as exc:
            raise Failure(description=f"secmaster sync of {target.feed} failed: {exc}") from exc
        return MaterializeResult(metadata=report_metadata(report, url, rest_url))

    return _secmaster


def _build_kraken_asset(target: SecmasterTarget) -> AssetsDefinition:
    @asset(
        key=target.asset_key,
        group_name=SECMASTER_GROUP,
        kinds={"postgres"},
        description=(
            "Kraken's spot pairs (AssetPairs) and futures products (instruments) in the secmaster, one symbol on "
            "all three levels with its category; a symbol gone from its listing is marked delisted. Run config "
            "market: spot or futures to sync one market."
        ),
    )
    def _secmaster(
        context: AssetExecutionContext,
        config: SecmasterSyncConfig,
        ssmd_config: SsmdConfigResource,
        secmaster_database: SecmasterDatabaseResource,
    ) -> MaterializeResult[None]:
        env = ssmd_config.environment()
        try:
            with secmaster_database.database_url() as url:
                context.log.info(f"syncing {target.feed} into {safe_url(url)}")
                report, rest = _sync_kraken(env, url, config)
        except ValueError as exc:
            raise Failure(description=f"secmaster sync of {target.feed}: {exc}") from exc
        except (RestError, MigrationError, PostgresStartError) as exc:
            raise Failure(description=f"secmaster sync of {target.feed} failed: {exc}") from exc
        metadata = report_metadata(report, url, rest.split()[0])
        metadata["rest_urls"] = rest
        metadata["delisted"] = report.settled
        return MaterializeResult(metadata=metadata)

    return _secmaster


def secmaster_schedules(
    targets: list[SecmasterTarget],
    *,
    cron: str = HOURLY_CRON,
    default_status: DefaultScheduleStatus = DefaultScheduleStatus.RUNNING,
) -> list[ScheduleDefinition]:
    """One hourly schedule over every secmaster asset (none when the environment has no synced feed)."""
    if not targets:
        return []
    return [
        ScheduleDefinition(
            name="secmaster_sync_hourly",
            target=AssetSelection.assets(*[t.asset_key for t in targets]),
            cron_schedule=cron,
            execution_timezone="UTC",
            default_status=default_status,
            description="Sync the secmaster from the exchanges' REST APIs every hour (behind the lifecycle events).",
        )
    ]
