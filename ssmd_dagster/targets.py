"""What gets archived: one target per feed stream of the environment, derived from the same
``desired_streams`` that provisioning uses, so an archive asset exists exactly for each stream."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from dagster import AssetCheckKey, AssetKey

from ingest_daemons import naming
from ingest_daemons.adapters.kraken_book import DEFAULT_DEPTH
from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.config.models import QuietHours
from ingest_daemons.streams import desired_streams

CHECK_CONTIGUITY = "contiguity"
CHECK_MANIFEST = "manifest_matches_file"
CHECK_GZIP = "gzip_integrity"
KRAKEN_PROTOCOL = "kraken_v2"
ARCHIVE_CHECKS = (CHECK_CONTIGUITY, CHECK_MANIFEST, CHECK_GZIP)
CHECK_BOOK_INTEGRITY = "book_integrity"  # Kraken spot books, replayed and checksum-verified per partition
CHECK_FRESHNESS = "freshness"  # of the stream, not of a partition (ssmd_dagster/freshness.py)


@dataclass(frozen=True)
class ArchiveTarget:
    """One stream to archive: ``archive/{env}/{feed}/{category}`` ← stream ``{ENV}_{FEED}_{CATEGORY}``."""

    env: str
    feed: str
    category: str
    stream: str
    subjects: tuple[str, ...]
    max_age: timedelta
    feed_display_name: str
    max_silence: timedelta | None = None  # freshness threshold; None: silence is not judged
    quiet_hours: tuple[QuietHours, ...] = ()
    book_depth: int | None = None  # Kraken: the spot book depth subscribed; set, the book_integrity check runs

    @property
    def asset_key(self) -> AssetKey:
        return AssetKey(["archive", self.env, self.feed, self.category])

    @property
    def name(self) -> str:
        """A Python-identifier form of the asset key (op and check-op names)."""
        return f"archive_{self.env}_{self.feed}_{self.category}"

    def check_keys(self) -> list[AssetCheckKey]:
        """The per-partition checks that run with each materialisation."""
        names = (*ARCHIVE_CHECKS, CHECK_BOOK_INTEGRITY) if self.book_depth is not None else ARCHIVE_CHECKS
        return [AssetCheckKey(self.asset_key, name) for name in names]

    @property
    def freshness_key(self) -> AssetCheckKey:
        return AssetCheckKey(self.asset_key, CHECK_FRESHNESS)


def archive_targets(env: ResolvedEnvironment) -> list[ArchiveTarget]:
    """Feed streams only: the secmaster CDC stream is not market data and is not archived here."""
    targets = []
    for spec in desired_streams(env):
        _, feed, category, *_ = spec.subjects[0].split(".")
        if feed == naming.CDC_FEED:
            continue
        freshness = env.feeds[feed].settings.freshness
        config = env.feeds[feed].feed
        book_depth = (config.book_depth or DEFAULT_DEPTH) if config.protocol == KRAKEN_PROTOCOL else None
        targets.append(
            ArchiveTarget(
                env=env.name,
                feed=feed,
                category=category,
                stream=spec.name,
                subjects=spec.subjects,
                max_age=spec.limits.max_age,
                feed_display_name=env.feeds[feed].feed.display_name,
                max_silence=freshness.threshold_for(category),
                quiet_hours=tuple(freshness.quiet_hours),
                book_depth=book_depth,
            )
        )
    return targets
