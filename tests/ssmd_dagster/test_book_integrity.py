"""The ``book_integrity`` check on Kraken archive partitions, materialised in-process from a real stream:
one filled by the real connector from the simulator with an injected wrong checksum, one crafted from the
recorded frames with a mismatch that no snapshot repairs."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from dagster import (
    AssetCheckEvaluation,
    AssetCheckSeverity,
    DagsterInstance,
    ExecuteInProcessResult,
    materialize,
)

from ingest_daemons.archive import TimeWindow
from ingest_daemons.archive.book_integrity import NS, BookIntegrityReport, SymbolIntegrity
from ingest_daemons.config import ResolvedEnvironment
from ssmd_dagster.checks.book_integrity import book_integrity_result, build_book_integrity_check
from ssmd_dagster.definitions import build_definitions
from ssmd_dagster.targets import CHECK_BOOK_INTEGRITY, ArchiveTarget, archive_targets
from tests.fixtures.archive import MessageFactory, publish, sample_frames
from tests.fixtures.kraken import KrakenBenchFactory
from tests.helpers import wait_until
from tests.ingest_daemons.archive.test_book_integrity import gap_marker, wrong_checksum


def spot_target(env: ResolvedEnvironment) -> ArchiveTarget:
    return next(t for t in archive_targets(env) if t.feed == "kraken" and t.category == "spot")


def materialise(env: ResolvedEnvironment, window: TimeWindow, grace_s: float | None = None) -> AssetCheckEvaluation:
    """The spot stream's archive asset for today's key over ``window``, with its book_integrity check.

    Called on the test's own thread: the asset runs its coroutines on a loop of its own
    (ssmd_dagster/_async.py); materialising from a worker thread beside the running loop once broke
    CPython 3.11's AST recursion counter for the rest of the session."""
    key = datetime.now(UTC).strftime("%Y-%m-%d")
    defs = build_definitions(env, window_for=lambda _: window)
    target = spot_target(env)
    asset = defs.get_assets_def(target.asset_key)
    check: Any = defs.get_asset_checks_def(next(k for k in target.check_keys() if k.name == CHECK_BOOK_INTEGRITY))
    if grace_s is not None:
        assert asset.partitions_def is not None
        check = build_book_integrity_check(target, asset.partitions_def, recovery_grace_s=grace_s)
    result: ExecuteInProcessResult = materialize([asset, check], partition_key=key,
                                                 instance=DagsterInstance.ephemeral(), resources=defs.resources)
    assert result.success
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == CHECK_BOOK_INTEGRITY]
    return evaluation


def meta(evaluation: AssetCheckEvaluation) -> dict[str, Any]:
    return {k: v.value for k, v in evaluation.metadata.items()}


async def test_an_injected_wrong_checksum_is_recorded_and_repaired(kraken_bench: KrakenBenchFactory) -> None:
    start = time.time_ns()
    bench = await kraken_bench("spot", rate=400)
    await bench.connector.wait_subscribed(10)
    await wait_until(lambda: len(bench.sent_data()) >= 150, 10, "book frames flowing")
    bench.sim.bad_checksum("ETH/USD")
    await wait_until(lambda: any(f.fault == "checksum" for f in bench.sim.sent_frames), 10, "the bad checksum")
    resubscribed = len(bench.sim.sent_frames)
    await wait_until(lambda: any(f.data.startswith(b'{"channel":"book","type":"snapshot","data":[{"symbol":"ETH/USD"')
                                 for f in bench.sim.sent_frames[resubscribed:]), 10, "the fresh ETH/USD snapshot")
    target = len(bench.sent_data()) + 100
    await wait_until(lambda: len(bench.sent_data()) >= target, 10, "frames after the resync")
    stored = await bench.stop_and_collect()
    bench.assert_exactly_once(stored)
    sent_books = [f.data for f in bench.sim.sent_frames if f.data.startswith(b'{"channel":"book"')]

    evaluation = materialise(bench.env, TimeWindow(start, time.time_ns()))
    found = meta(evaluation)
    assert evaluation.passed, evaluation.description
    assert found["book_frames"] == len(sent_books)  # every book frame the simulator sent is in the partition
    assert (found["mismatches"], found["reported_by_connector"], found["resyncs"]) == (1, 1, 1)
    assert found["symbols_unrecovered"] == 0 and found["carried_in_frames"] == 0
    assert found["checksums_verified"] == len(sent_books) - 1 - found["unverified_frames"]
    assert found["unverified_s"] > 0
    assert "| ETH/USD |" in found["per_symbol"] and "| BTC/USD |" not in found["per_symbol"]


async def test_a_mismatch_no_snapshot_repairs_fails_the_check(kraken_bench: KrakenBenchFactory) -> None:
    bench = await kraken_bench("spot", start_connector=False)
    frames = sample_frames("kraken_book.jsonl")
    m = MessageFactory(bench.env.name, feed="kraken", category="spot")
    messages = [m.message("book", "BTC/USD", f) for f in frames[:50]]
    messages += [m.message("book", "BTC/USD", wrong_checksum(frames[50])), m.marker("gap", "BTC/USD", gap_marker())]
    messages += [m.message("book", "BTC/USD", f) for f in frames[51:60]]
    start = time.time_ns()
    await asyncio.to_thread(publish, bench.nats_url, messages)
    window = TimeWindow(start, time.time_ns())

    failed = materialise(bench.env, window, 0.0)
    assert not failed.passed and failed.severity == AssetCheckSeverity.ERROR
    assert "BTC/USD" in (failed.description or "")
    found = meta(failed)
    assert (found["checksums_verified"], found["mismatches"], found["reported_by_connector"]) == (50, 1, 1)
    assert (found["unverified_frames"], found["symbols_unrecovered"], found["resyncs"]) == (9, 1, 0)

    late = materialise(bench.env, window)  # the break is seconds old: maybe tomorrow's
    assert not late.passed and late.severity == AssetCheckSeverity.WARN


def test_a_break_older_than_the_grace_is_an_error_a_recent_one_a_warning() -> None:
    target = ArchiveTarget("dev", "kraken", "spot", "DEV_KRAKEN_SPOT", ("dev.kraken.spot.>",),
                           max_age=timedelta(days=1), feed_display_name="Kraken", book_depth=25)
    old = SymbolIntegrity("BTC/USD", frames=3, verified=2, mismatches=1, broken_since_ns=0)
    recent = SymbolIntegrity("ETH/USD", frames=3, verified=2, mismatches=1, broken_since_ns=100 * NS)
    end = 120 * NS
    assert book_integrity_result(target, BookIntegrityReport([recent], end)).severity == AssetCheckSeverity.WARN
    both = book_integrity_result(target, BookIntegrityReport([old, recent], end))
    assert not both.passed and both.severity == AssetCheckSeverity.ERROR
    assert both.metadata["symbols_unrecovered"].value == 2 and "BTC/USD, ETH/USD" in (both.description or "")
