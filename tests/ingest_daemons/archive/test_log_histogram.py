"""The fixed log-scale histogram behind the clock profile: accuracy, bounded memory, merging."""

from __future__ import annotations

import random

from ingest_daemons.archive.log_histogram import CHUNK, EXACT_BELOW, LogHistogram, bin_of, merge_bins, quantile


def exact_quantile(values: list[int], q: float) -> int:
    ordered = sorted(values)
    rank = max(1, -(-int(q * len(ordered) * 1_000_000) // 1_000_000))
    return ordered[rank - 1]


def test_every_value_falls_in_its_bin_and_bins_are_narrow() -> None:
    for value in [*range(-300, 300), 2**40 + 12345, -(2**50) - 7, 10**18]:
        low, high = bin_of(value)
        assert low <= value < high
        assert bin_of(low) == (low, high), "a bin's low edge is in the same bin"
        if abs(value) < EXACT_BELOW:
            assert high - low == 1
        else:
            assert (high - low) <= max(abs(low), abs(high - 1)) / 15


def test_quantiles_are_within_a_few_percent_of_exact_ones() -> None:
    rng = random.Random(5)
    values = [int(rng.lognormvariate(5, 1.5)) - 40 for _ in range(50_000)]  # includes negatives
    hist = LogHistogram()
    for start in range(0, len(values), 997):  # folded in uneven slices, as the archive does
        for v in values[start : start + 997]:
            hist.add(v)
        hist.fold()
    summary = hist.summary()
    assert summary.count == len(values)
    assert (summary.min, summary.max) == (min(values), max(values)), "extremes are exact"
    for q, got in ((0.5, summary.p50), (0.99, summary.p99)):
        want = exact_quantile(values, q)
        assert got is not None and abs(got - want) <= max(1, abs(want) * 0.08), (q, got, want)
    assert quantile(summary.bins, 0.5, summary.min, summary.max) == summary.p50, "re-read bins give the same"


def test_memory_stays_bounded_with_a_million_distinct_values() -> None:
    hist = LogHistogram()
    for start in range(0, 1_000_000, 10_000):
        for v in range(start * 997, (start + 10_000) * 997, 997):
            hist.add(v)
        hist.fold()
        assert len(hist._values) < CHUNK, "folded in whole chunks"
    summary = hist.summary()
    assert summary.count == 1_000_000 and len(summary.bins) < 500
    assert sum(b[2] for b in summary.bins) == 1_000_000, "sample weights add up to the count"


def test_the_result_does_not_depend_on_when_the_caller_folds() -> None:
    rng = random.Random(3)
    values = [rng.randint(-10**9, 10**12) for _ in range(30_000)]
    often, once = LogHistogram(), LogHistogram()
    for i, v in enumerate(values):
        often.add(v)
        once.add(v)
        if i % 1_234 == 0:
            often.fold()
    assert often.summary() == once.summary()


def test_small_histograms_are_exact_and_merge_by_adding() -> None:
    a, b = LogHistogram(), LogHistogram()
    for v in range(-20, 100):
        a.add(v)
    for v in range(50, 150):
        b.add(v)
    a_bins, b_bins = a.summary().bins, b.summary().bins
    assert a.summary().p50 == 39.5 or abs((a.summary().p50 or 0) - 39) <= 1
    a.merge(b)
    merged = a.summary()
    assert (merged.count, merged.min, merged.max) == (220, -20, 149)
    assert merged.bins == merge_bins(a_bins, b_bins)


def test_an_empty_histogram_has_no_quantiles() -> None:
    summary = LogHistogram().summary()
    assert (summary.count, summary.p50, summary.p99, summary.max, summary.bins) == (0, None, None, None, [])
