"""The fast path for array frames (``split_compact_array``, ``PolymarketVenue.route_batch``) against the
general one (``split_frame``, ``classify``): same bytes, same routing, or no answer at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.adapters import polymarket as pm
from ingest_daemons.adapters.polymarket_venue import PolymarketVenue
from ingest_daemons.connector.venue import FrameKind
from ingest_daemons.sim.polymarket.generator import DataGenerator, GeneratorOptions, frame_of
from ingest_daemons.sim.polymarket.universe import build_universe
from tests.ingest_daemons.adapters.test_polymarket import OBJECTS, TRICKY, VALUES, Style, render

A, B = "1" * 77, "2" * 76
CONDITION = "0x" + "ab" * 32


def price_change(token: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"market": CONDITION, "price_changes": [{"asset_id": token, "price": "0.5", "size": "10", "side": "BUY"},
                                                    {"asset_id": B, "price": "0.5", "size": "1", "side": "SELL"}],
            "timestamp": "1", "event_type": "price_change", **(extra or {})}


def assert_agrees(frame: bytes) -> bool:
    """The fast split, when it answers, is exactly the general split; True when it answered."""
    fast = pm.split_compact_array(frame)
    if fast is None:
        return False
    elements, values = fast
    general = pm.split_frame(frame)
    assert elements == [payload for payload, *_ in general]
    assert values == orjson.loads(frame)
    pos = 0
    for element in elements:  # each a byte substring of the frame, in order
        pos = frame.index(element, pos) + len(element)
    return True


def test_compact_arrays_take_the_fast_path_and_agree() -> None:
    frame = orjson.dumps([price_change(A), price_change(B), price_change(A, {"note": "},{\"market\":"})])
    assert assert_agrees(frame)
    assert assert_agrees(orjson.dumps([price_change(A)]))


def test_what_the_fast_path_cannot_prove_goes_the_general_way() -> None:
    nested = orjson.dumps([{"market": "x", "sub": [{"market": 1}, {"market": 2}]}, {"market": "y"}])
    cases = [
        nested,  # the boundary token inside an element: more occurrences than boundaries
        orjson.dumps([{"market": "x"}, {"event_type": "book"}]),  # elements with different first keys
        orjson.dumps([{"a-b": 1}, {"a-b": 2}]),  # a key that is not a plain word
        b'[{"market":"x"}, {"market":"y"}]',  # not compact
        # not compact, and a look-alike boundary inside the first element: cut there, it would split wrongly
        b'[{"market":"x","sub":[{"a":1},{"market":2}]}, {"market":"y"}]',
        b'[{"market":"\\u0078"},{"market":"y"}]',  # escaped otherwise than orjson writes it
        b'[{"market":"x"},1]',
        b'[{"market":"x"},{"market":"y"}',  # broken
        b"[]",
        b"[{}]",
        b'{"market":"x"}',
        b"PONG",
    ]
    for frame in cases:
        assert pm.split_compact_array(frame) is None, frame


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objs=st.lists(OBJECTS, min_size=1, max_size=6), key=st.sampled_from(["market", "event_type"]),
       first=VALUES, data=st.data())
def test_any_array_splits_the_same_either_way(objs: list[dict[str, Any]], key: str, first: Any,
                                             data: st.DataObject) -> None:
    """Arbitrary objects (tricky strings, nested objects with the same first key), compact or not."""
    same_key = [{key: first, **{k: v for k, v in o.items() if k != key}} for o in objs]
    compact = orjson.dumps(same_key)
    answered = assert_agrees(compact)
    if compact[1:-1].count(b'},{"%s":' % key.encode()) == len(objs) - 1:
        assert answered, "a compact array of same-first-key objects with no look-alike boundary takes the fast path"
    assert_agrees(render(same_key, Style(data)).encode())
    assert_agrees(render(objs, Style(data)).encode())
    assert_agrees(orjson.dumps(objs))


@settings(max_examples=60, deadline=None)
@given(text=TRICKY)
def test_tricky_strings_inside_elements(text: str) -> None:
    frame = orjson.dumps([price_change(A, {"note": text}), price_change(B, {"note": text + "},{"})])
    assert assert_agrees(frame)


def test_route_batch_routes_as_classify_does(samples_dir: Path) -> None:
    venue = PolymarketVenue()
    frames: list[bytes] = []
    for path in sorted(samples_dir.glob("polymarket_*.jsonl")):
        if path.name != "polymarket_subscribe.jsonl":
            lines = [line for line in path.read_bytes().splitlines() if line.strip()]
            frames += lines
            frames.append(orjson.dumps([orjson.loads(line) for line in lines if line.startswith(b"{")]))
    universe = build_universe(markets=4, seed=3)
    generator = DataGenerator(universe, 3, GeneratorOptions(array_frames="always", array_max=20))
    flood = generator.flood(universe.trading_tokens(), 200, 1)
    frames += [frame_of(elements) for elements in flood]
    fast = 0
    for frame in frames:
        routed = venue.route_batch(frame)
        if routed is None:
            continue
        fast += 1
        classified = venue.classify(frame)
        assert all(m.kind is FrameKind.DATA for m in classified)
        assert list(routed) == [(m.payload, m.subject_type, m.market) for m in classified]
    assert fast >= len(flood), "every flooded array frame takes the fast path"
