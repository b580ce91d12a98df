"""A bounded-memory quantile estimate over signed integers: fixed log-scale bins, exact extremes.

Why fixed bins rather than a sketch that adapts to the data: the bins are a pure function of the
value, so two histograms (two message types, two days) merge by adding counts, the result is the
same whatever order values arrive in (a partition's manifest stays byte-identical on re-runs), and
a reader can recompute any quantile from the bins stored in the manifest.

Bins: every integer with ``|v| < 32`` has its own bin; beyond, each power of two is cut into 16
equal bins (the top five bits of ``|v|``), so a bin is at most 1/16 of its lower edge wide and the
midpoint a quantile reports is within ~3% of any value in it. Negative values mirror positive ones.
A day of values spans a few dozen bins; even every value from 1 to 2**63 needs about a thousand.

Values are collected in a plain list (one ``list.append`` per value: the caller's hot loop) and
folded into bins by :meth:`LogHistogram.fold`, which the caller runs every few thousand values.
Folding goes in fixed chunks of :data:`CHUNK` values whatever the caller's rhythm, so the result
depends only on the values and their order (a re-run writes the same manifest). A full chunk is
binned from a systematic sample, every :data:`SAMPLE_STEP`-th value weighted by the step: binning
is Python work per value, and a day has millions. Count, min and max stay exact; quantiles come
from at least 256 values per 4,096; a chunk of fewer than 256 values (small days, the tail) is
binned whole, so small partitions are exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

EXACT_BELOW = 32  # |v| below this has a bin of its own
_SUB_BITS = 5  # top bits kept above EXACT_BELOW: 16 bins per power of two
CHUNK = 4096  # values folded at a time
SAMPLE_STEP = 16  # one value in this many is binned (weighted by it); chunks below 256 values: all


def bin_of(value: int) -> tuple[int, int]:
    """``[low, high)`` of the bin holding ``value``."""
    magnitude = -value if value < 0 else value
    if magnitude < EXACT_BELOW:
        low, high = magnitude, magnitude + 1
    else:
        shift = magnitude.bit_length() - _SUB_BITS
        low = (magnitude >> shift) << shift
        high = low + (1 << shift)
    return (low, high) if value >= 0 else (1 - high, 1 - low)


@dataclass(frozen=True)
class HistogramSummary:
    """What a manifest keeps of one histogram: count, extremes, p50/p99 and the bins themselves.

    ``bins`` is ``[[low, high, count], ...]`` sorted by ``low``, ``high`` exclusive; quantiles are
    nearest-rank on the bins, reported as the bin's midpoint (exact for bins of width 1) and
    clamped to the exact ``min``/``max``.
    """

    count: int
    min: int | None
    p50: float | None
    p99: float | None
    max: int | None
    bins: list[list[int]] = field(default_factory=list)

    @classmethod
    def from_json(cls, body: dict[str, object]) -> HistogramSummary:
        return cls(**body)  # type: ignore[arg-type]


class LogHistogram:
    """Collects integers cheaply (``hist.add(v)``) and summarises them; see the module docstring."""

    __slots__ = ("_bins", "_count", "_max", "_min", "_values", "add")

    def __init__(self) -> None:
        self._values: list[int] = []
        self.add = self._values.append  # the hot path: no method call of ours per value
        self._bins: Counter[int] = Counter()  # keyed by bin low edge
        self._count = 0
        self._min: int | None = None
        self._max: int | None = None

    @property
    def count(self) -> int:
        return self._count + len(self._values)

    def fold(self, final: bool = False) -> None:
        """Fold whole chunks of collected values into bins (all of them when ``final``)."""
        values = self._values
        done = len(values) if final else len(values) - len(values) % CHUNK
        for start in range(0, done, CHUNK):
            self._fold_chunk(values[start : start + CHUNK])
        del values[:done]

    def _fold_chunk(self, chunk: list[int]) -> None:
        self._count += len(chunk)
        low, high = min(chunk), max(chunk)
        self._min = low if self._min is None else min(self._min, low)
        self._max = high if self._max is None else max(self._max, high)
        step = SAMPLE_STEP if len(chunk) >= SAMPLE_STEP * 16 else 1
        bins = self._bins
        sample = chunk[::step]
        for value in sample:
            bins[bin_of(value)[0]] += step
        bins[bin_of(sample[-1])[0]] -= len(sample) * step - len(chunk)  # the weights add up to the count

    def merge(self, other: LogHistogram) -> None:
        """Add ``other``'s values (both are folded completely first)."""
        other.fold(final=True)
        self.fold(final=True)
        if other._count == 0:
            return
        self._count += other._count
        assert other._min is not None and other._max is not None
        self._min = other._min if self._min is None else min(self._min, other._min)
        self._max = other._max if self._max is None else max(self._max, other._max)
        self._bins.update(other._bins)

    def binned(self) -> list[list[int]]:
        """Non-empty bins with their counts, sorted."""
        return [[low, _high_of(low), n] for low, n in sorted(self._bins.items()) if n]

    def summary(self) -> HistogramSummary:
        self.fold(final=True)
        bins = self.binned()
        return HistogramSummary(
            count=self._count,
            min=self._min,
            p50=quantile(bins, 0.50, self._min, self._max),
            p99=quantile(bins, 0.99, self._min, self._max),
            max=self._max,
            bins=bins,
        )


def _high_of(low: int) -> int:
    """Exclusive upper edge of the bin whose lower edge is ``low`` (a bin's edge is in the bin)."""
    return bin_of(low)[1]


def quantile(bins: list[list[int]], q: float, low: int | None = None, high: int | None = None) -> float | None:
    """Nearest-rank quantile ``q`` (0..1) of sorted ``[[low, high, count]]`` bins; None when empty."""
    total = sum(b[2] for b in bins)
    if total == 0:
        return None
    rank = max(1, -(-int(q * total * 1_000_000) // 1_000_000))  # ceil(q * total) without float drift
    seen = 0
    for lo, hi, n in bins:
        seen += n
        if seen >= rank:
            mid = (lo + hi - 1) / 2
            if low is not None:
                mid = max(mid, low)
            if high is not None:
                mid = min(mid, high)
            return float(mid)
    return float(high) if high is not None else float(bins[-1][1] - 1)


def merge_bins(*histograms: list[list[int]]) -> list[list[int]]:
    """Add bin lists read back from manifests (the bins are fixed, so counts simply add)."""
    counts: Counter[tuple[int, int]] = Counter()
    for bins in histograms:
        for lo, hi, n in bins:
            counts[(lo, hi)] += n
    return [[lo, hi, n] for (lo, hi), n in sorted(counts.items())]
