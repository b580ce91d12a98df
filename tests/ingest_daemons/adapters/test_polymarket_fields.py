"""Routing Polymarket frames without building their objects: same answers as the orjson path, or none.

``PolymarketVenue.route`` / ``route_batch`` now read only the routing fields (``polymarket_fields``).
Whenever they answer, the answer must be exactly what ``classify`` (orjson's full parse, the reference)
gives; a frame that is not JSON by orjson's verdict must get no answer from either, so the engine
publishes it whole as ``unparsed``; and neither may call ``orjson.loads`` for an ordinary frame.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.adapters.polymarket_venue import PolymarketVenue
from ingest_daemons.connector.venue import FrameKind
from ingest_daemons.sim.polymarket.generator import DataGenerator, GeneratorOptions, frame_of
from ingest_daemons.sim.polymarket.universe import build_universe
from tests.helpers import orjson_accepts
from tests.ingest_daemons.adapters.test_polymarket import OBJECTS, Style, render

A = "1" * 77
CONDITION = "0x" + "ab" * 32


def check(venue: PolymarketVenue, frame: bytes) -> tuple[bool, bool]:
    """``route`` / ``route_batch`` agree with ``classify`` on ``frame``; returns which of them answered."""
    classified = venue.classify(frame)
    routed = venue.route(frame)
    if routed is not None:
        (message,) = classified
        assert message.kind is FrameKind.DATA and message.payload == frame
        assert routed == (message.subject_type, message.market, None, None)
    batch = venue.route_batch(frame)
    if batch is not None:
        assert all(m.kind is FrameKind.DATA and m.category is None for m in classified)
        assert list(batch) == [(m.payload, m.subject_type, m.market) for m in classified]
        pos = 0
        for payload, *_ in batch:  # each element a byte substring of the frame, in order
            pos = frame.index(payload, pos) + len(payload)
    if not orjson_accepts(frame):
        assert routed is None and batch is None, "a frame that is not JSON is published whole as unparsed"
        assert [m.kind for m in classified] == [FrameKind.CONTROL if frame == b"PONG" else FrameKind.UNPARSED]
    return routed is not None, batch is not None


def recorded_frames(samples_dir: Path) -> tuple[list[bytes], int]:
    frames: list[bytes] = []
    for path in sorted(samples_dir.glob("polymarket_*.jsonl")):
        if path.name != "polymarket_subscribe.jsonl":
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
            frames += lines
            objects = [orjson.loads(line) for line in lines if line.startswith(b"{")]
            frames.append(orjson.dumps(objects))
            frames.append(orjson.dumps(objects, option=orjson.OPT_INDENT_2))
    universe = build_universe(markets=4, seed=3)
    generator = DataGenerator(universe, 3, GeneratorOptions(array_frames="always", array_max=20))
    flood = [frame_of(elements) for elements in generator.flood(universe.trading_tokens(), 100, 1)]
    return frames + flood, len(flood)


def test_recorded_and_simulated_frames_and_their_broken_variants_route_as_classify_does(samples_dir: Path) -> None:
    venue = PolymarketVenue()
    frames, flooded = recorded_frames(samples_dir)
    answered = [check(venue, frame) for frame in frames]
    assert sum(batch for _, batch in answered) >= flooded + 8, "flooded and recorded arrays, indented ones too"
    assert sum(single for single, _ in answered) >= 8
    broken = []
    for frame in frames[:40] + frames[-5:]:
        broken += [frame[:cut] for cut in range(1, len(frame), max(1, len(frame) // 23))]
        broken += [frame + b"x", frame[:-1] + b',{"a":1e400}]', frame.replace(b'"', b'"\xff', 1),
                   frame.replace(b'"market"', b'"note":"\xed\xa0\x80","market"', 1),
                   frame.replace(b'"market"', b'"n":1e400,"market"', 1)]
    assert sum(not orjson_accepts(f) for f in broken) > len(broken) // 2
    for frame in broken:
        check(venue, frame)


def test_shapes_only_orjsons_path_reads_get_no_fast_answer_and_no_wrong_one() -> None:
    venue = PolymarketVenue()
    change = {"asset_id": A, "price": "0.5"}
    odd = [
        {"event_type": "price_change", "market": CONDITION, "price_changes": [change, 7]},  # a change not an object
        {"event_type": "price_change", "market": CONDITION, "price_changes": None},
        {"event_type": "price_change", "market": CONDITION, "price_changes": []},
        {"event_type": "price_change", "market": CONDITION, "price_changes": [7, change]},
        {"event_type": "price_change", "asset_id": None, "market": CONDITION, "price_changes": [change]},
        {"asset_id": A, "bids": [], "market": CONDITION},  # an initial book without event_type
        {"asset_id": None, "buys": None, "market": CONDITION},
        {"bids": [], "market": CONDITION},
        {"event_type": "", "asset_id": A},
        {"event_type": 5, "asset_id": A},
        {"event_type": "book", "asset_id": 5, "market": 7},
        {"event_type": "new_market", "market": CONDITION, "assets_ids": [A]},
    ]
    for value in odd:
        check(venue, orjson.dumps(value))
        check(venue, orjson.dumps([value, {"event_type": "book", "asset_id": A, "market": CONDITION}]))
    deep = b'[{"event_type":"book","asset_id":"4","x":' + b"[" * 1100 + b"]" * 1100 + b"}]"
    for frame in (b'{"event_type":"book","asset_id":"1","asset_id":"2"}', b'{"\\u0065vent_type":"book","asset_id":"3"}',
                  b"[" * 1025 + b"]" * 1025, deep, b"[1,2]", b"[]", b'["a"]', b"PONG", b" [ ] "):
        check(venue, frame)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objs=st.lists(OBJECTS, min_size=1, max_size=5), data=st.data(),
       kinds=st.lists(st.sampled_from(["book", "price_change", "last_trade_price", None]), min_size=5, max_size=5))
def test_any_array_of_objects_routes_as_classify_does(objs: list[dict[str, Any]], data: st.DataObject,
                                                      kinds: list[str | None]) -> None:
    events = [({"event_type": kind, "asset_id": A, "market": CONDITION} if kind else {}) | obj
              for obj, kind in zip(objs, kinds, strict=False)]
    venue = PolymarketVenue()
    for frame in (orjson.dumps(events), render(events, Style(data)).encode(), render(events[0], Style(data)).encode()):
        check(venue, frame)


def test_ordinary_frames_are_routed_without_orjson_even_when_not_compact(monkeypatch: pytest.MonkeyPatch) -> None:
    universe = build_universe(markets=4, seed=5)
    generator = DataGenerator(universe, 5, GeneratorOptions(array_frames="always", array_max=20))
    arrays = [frame_of(elements) for elements in generator.flood(universe.trading_tokens(), 50, 1)]
    spaced = [orjson.dumps(orjson.loads(frame), option=orjson.OPT_INDENT_2) for frame in arrays[:10]]
    singles = [orjson.dumps(event) for frame in arrays[:10] for event in orjson.loads(frame)]
    venue = PolymarketVenue()
    expected = {frame: [(m.payload, m.subject_type, m.market) for m in venue.classify(frame)]
                for frame in arrays + spaced}

    calls: list[bytes] = []
    loads = orjson.loads

    def counting(text: bytes) -> Any:
        calls.append(text)
        return loads(text)

    monkeypatch.setattr(orjson, "loads", counting)
    for frame in arrays + spaced:
        assert venue.route_batch(frame) == expected[frame]  # indented arrays too: no longer the slow path
    for frame in singles:
        assert venue.route(frame) is not None
    assert calls == [], f"orjson.loads called {len(calls)} times"


def test_deep_frames_get_no_fast_answer_with_the_bracket_scan_skipped_or_not() -> None:
    """The bracket scan is skipped while msgspec's recursion limit refuses what orjson would (3.11, limit at
    most orjson's depth); raised above it, the brackets are counted again. Either way no fast answer."""
    import sys

    from ingest_daemons.adapters import polymarket_fields

    venue = PolymarketVenue()
    frames = [b'[{"event_type":"book","asset_id":"4","x":' + b"[" * n + b"]" * n + b"}]" for n in (1100, 3000)]
    frames += [b'{"event_type":"book","asset_id":"4","x":' + b"{\"a\":" * 1100 + b"1" + b"}" * 1100 + b"}"]
    limit = sys.getrecursionlimit()
    try:
        for raised in (False, True):
            sys.setrecursionlimit(5000 if raised else 1000)
            for frame in frames:
                assert polymarket_fields._may_be_too_deep(frame) is (raised or sys.version_info >= (3, 12))
                check(venue, frame)
    finally:
        sys.setrecursionlimit(limit)
