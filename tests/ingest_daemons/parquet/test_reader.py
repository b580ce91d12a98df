"""The reader's vectorised line work gives exactly what the per-line rules give (pure)."""

from __future__ import annotations

from hypothesis import example, given, settings
from hypothesis import strategies as st

from ingest_daemons.parquet.reader import block_of, groups_of, index_lines, line_type, rows_containing

KNOWN = [b"ticker", b"trade", b"orderbook", b"lifecycle", b"event_lifecycle", b"gap", b"status"]
HEAD = b'{"seq":12,"ts":34,"subject":"'

# Pieces that make lines near every edge of the rule: envelope head or not, ".json." early, late
# (past the search window) or twice, known types, types with a prefix in common, no dot after the
# type, empty lines, non-ASCII.
_PIECES = st.sampled_from([
    HEAD, b"dev.kalshi.economics", b".json.", b".json", b"json.", *KNOWN, b"lifecycl", b"tickers", b"event_",
    b".", b"X", b"%2E", b'"', b"{", b"\xc3\xa9", b"\xff", b"a" * 50, b"b" * 390,
    b'"frame":{"type":"orderbook_snapshot"}',
])
_LINE = st.lists(_PIECES, max_size=8).map(b"".join)


EDGES = [
    HEAD + b"a" * 365 + b".json.ticker.X",  # ".json." ends exactly at the window's edge: found
    HEAD + b"a" * 366 + b".json.ticker.X",  # one byte further: not found
    HEAD + b"dev.k.c.json.ticker",  # no dot after the type
    HEAD + b"dev.k.c.json.ticker.",
    HEAD + b"dev.k.c.json.lifecycle.X", HEAD + b"dev.k.c.json.event_lifecycle.X", HEAD + b"d.json.tickers.X",
    b" " + HEAD + b"dev.k.c.json.ticker.X", b"", b'{"seq":', HEAD + b"x.json.json.trade.Y",
]


@settings(max_examples=300, deadline=None)
@given(st.lists(_LINE, min_size=1, max_size=30))
@example(EDGES)
def test_vectorised_types_and_groups_equal_the_per_line_rule(lines: list[bytes]) -> None:
    text = b"".join(line + b"\n" for line in lines)
    array = index_lines(text + b"trailing bytes past the end", len(text))
    assert [array[i].as_py()[:-1] for i in range(len(array))] == lines
    assert block_of(array).to_pybytes() == text
    expected: dict[bytes, list[int]] = {}
    for row, line in enumerate(lines):
        expected.setdefault(line_type(line), []).append(row)
    groups = groups_of(array, KNOWN)
    assert list(groups) == list(expected)  # types in order of first appearance
    assert {kind: rows.tolist() for kind, rows in groups.items()} == expected
    needle = b"orderbook_snapshot"
    assert rows_containing(text, array, needle).tolist() == [i for i, line in enumerate(lines) if needle in line]
