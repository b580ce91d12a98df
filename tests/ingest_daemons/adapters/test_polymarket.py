"""Polymarket venue code (protocols.md §B), pure: golden samples, commands, the array splitter."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons.adapters import polymarket as pm
from ingest_daemons.config import load_exchanges
from tests.fixtures.config import REPO_EXCHANGES

BOOK_TOKEN = "65818619657568813474341868652308942079804919287380422192892211131408793125422"
PC_TOKEN = "71321045679252212594626385532706912750332728571942532289631379312455583992563"
PC_MARKET = "0x5f65177b394277fd294cd75650044e32ba009a95022d88a0c1d565897d72f8f1"
NVDA_MARKET = "0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1"


def sample_lines(samples_dir: Path, name: str) -> list[bytes]:
    return [line for line in (samples_dir / name).read_bytes().splitlines() if line.strip()]


def expected_of(name: str, line: bytes) -> tuple[str, str | None, str | None]:
    """What each sample file holds, read from the documented shapes (§B2), not from the adapter."""
    body = orjson.loads(line)
    if name in ("polymarket_new_market.jsonl", "polymarket_market_resolved.jsonl"):
        return body["event_type"], None, body["market"]
    if name == "polymarket_price_change.jsonl" and "price_changes" in body:
        return "price_change", body["price_changes"][0]["asset_id"], body["market"]
    kind = name.removeprefix("polymarket_").removesuffix(".jsonl")
    return kind, body["asset_id"], body["market"]


DATA_SAMPLES = [
    "polymarket_book.jsonl",
    "polymarket_price_change.jsonl",
    "polymarket_last_trade_price.jsonl",
    "polymarket_tick_size_change.jsonl",
    "polymarket_best_bid_ask.jsonl",
    "polymarket_new_market.jsonl",
    "polymarket_market_resolved.jsonl",
]


def test_every_sample_file_is_covered(samples_dir: Path) -> None:
    files = {p.name for p in samples_dir.glob("polymarket_*")}
    assert files == {*DATA_SAMPLES, "polymarket_subscribe.jsonl"}


@pytest.mark.parametrize("name", DATA_SAMPLES)
def test_golden_sample_lines(samples_dir: Path, name: str) -> None:
    for line in sample_lines(samples_dir, name):
        messages = pm.split_frame(line)
        assert len(messages) == 1
        data, event_type, token, market = messages[0]
        assert data is line or data == line
        assert (event_type, token, market) == expected_of(name, line)
        assert token is None or (token.isdigit() and 76 <= len(token) <= 78)
        assert pm.classify(line) == (event_type, token, market)


def test_golden_values_spelled_out(samples_dir: Path) -> None:
    book = sample_lines(samples_dir, "polymarket_book.jsonl")
    assert pm.split_frame(book[10])[0][1:3] == ("book", BOOK_TOKEN)
    assert pm.split_frame(book[11])[0][1:3] == ("book", BOOK_TOKEN)  # old docs: buys/sells
    current, legacy = sample_lines(samples_dir, "polymarket_price_change.jsonl")
    assert pm.split_frame(current)[0][1:] == ("price_change", PC_TOKEN, PC_MARKET)
    assert pm.split_frame(legacy)[0][1:] == ("price_change", PC_TOKEN, PC_MARKET)
    (new,) = sample_lines(samples_dir, "polymarket_new_market.jsonl")
    assert pm.split_frame(new)[0][1:] == ("new_market", None, NVDA_MARKET)


@pytest.mark.parametrize("sep", [b",", b", ", b"\n,\n", b" ,\t"])
def test_golden_samples_wrapped_in_arrays(samples_dir: Path, sep: bytes) -> None:
    """All data samples in one array frame (§B1): one message per element, each its original line,
    at its own offset in the frame, classified as when it arrived alone."""
    lines = [(name, line) for name in DATA_SAMPLES for line in sample_lines(samples_dir, name)]
    frame = b"[" + sep.join(line for _, line in lines) + b"]"
    messages = pm.split_frame(frame)
    assert len(messages) == len(lines)
    pos = 0
    for (name, line), (data, event_type, token, market) in zip(lines, messages, strict=True):
        assert data == line
        at = frame.index(data, pos)
        assert frame[at : at + len(data)] == data  # a byte substring of the frame, in order
        pos = at + len(data)
        assert (event_type, token, market) == expected_of(name, line)


def test_book_without_event_type_is_a_book(samples_dir: Path) -> None:
    """§B1: some initial book frames lacked ``event_type``."""
    body = orjson.loads(sample_lines(samples_dir, "polymarket_book.jsonl")[0])
    del body["event_type"]
    frame = b"[" + orjson.dumps(body) + b"]"
    assert pm.split_frame(frame)[0][1:3] == ("book", body["asset_id"])


def test_subscribe_command_matches_the_documented_message(samples_dir: Path) -> None:
    doc = sample_lines(samples_dir, "polymarket_subscribe.jsonl")[1]
    tokens = orjson.loads(doc)["assets_ids"]
    assert pm.subscribe_command(tokens) == doc


def test_add_and_remove_commands() -> None:
    assert orjson.loads(pm.add_command([PC_TOKEN])) == {
        "assets_ids": [PC_TOKEN], "operation": "subscribe", "custom_feature_enabled": True,
    }  # fmt: skip
    assert orjson.loads(pm.remove_command([PC_TOKEN])) == {"assets_ids": [PC_TOKEN], "operation": "unsubscribe"}
    # Token ids are written as JSON strings, never numbers.
    assert b'"' + PC_TOKEN.encode() + b'"' in pm.remove_command([PC_TOKEN])


@pytest.mark.parametrize("bad", [int(PC_TOKEN), "0x12", "", " 1", "\uff11\uff12"])
def test_token_ids_must_be_decimal_strings(bad: Any) -> None:
    with pytest.raises(ValueError, match="decimal strings"):
        pm.subscribe_command([bad])


def test_connection_assets_enforce_the_limit() -> None:
    tokens = [str(10**76 + i) for i in range(600)]
    assert [len(g) for g in pm.partition_assets(tokens)] == [500, 100]
    assert [len(g) for g in pm.partition_assets(tokens + tokens[:10], per_connection=250)] == [250, 250, 100]
    with pytest.raises(pm.AssetLimitExceeded):
        pm.ConnectionAssets(tokens)
    conn = pm.ConnectionAssets(tokens[:499])
    assert orjson.loads(conn.initial())["assets_ids"] == tokens[:499]
    assert conn.add(tokens[:3]) is None  # nothing new
    with pytest.raises(pm.AssetLimitExceeded):
        conn.add(tokens[499:501])
    assert len(conn) == 499, "a refused add changes nothing"
    assert orjson.loads(conn.add(tokens[499:500]) or b"")["assets_ids"] == [tokens[499]]
    assert conn.room == 0
    assert orjson.loads(conn.remove([tokens[0], "1"]) or b"")["assets_ids"] == [tokens[0]]
    assert conn.remove(["1"]) is None
    assert conn.room == 1 and tokens[0] not in conn


@pytest.mark.parametrize(
    "frame",
    [b'{"event_type":"book"', b"[", b"[{}", b'[{"event_type":"book"},]', b"[1,2]", b'[{"a":1},"x"]',
     b"\xff\xfe", b'{"event_type":"book","asset_id":"1"}x', b"nope"],
)  # fmt: skip
def test_malformed_frames_are_one_unparsed_message(frame: bytes) -> None:
    assert pm.split_frame(frame) == [(frame, "unparsed", None, None)]


def test_pong_and_empty_array() -> None:
    assert pm.split_frame(b"PONG") == [(b"PONG", "pong", None, None)]
    assert pm.split_frame(b"[]") == []
    assert pm.split_frame(b" [ ] ") == []


def test_unknown_event_types_keep_their_name_and_typeless_objects_are_unparsed() -> None:
    assert pm.split_frame(b'{"event_type":"future_thing","asset_id":"1"}')[0][1:3] == ("future_thing", "1")
    assert pm.split_frame(b'{"hello":"world"}')[0][1] == "unparsed"


def test_subject_types_follow_the_feed_config() -> None:
    feed = load_exchanges(REPO_EXCHANGES).feeds["polymarket"]
    assert pm.subject_types(feed.message_types) == pm.subject_types()
    assert pm.subject_types()["last_trade_price"] == "trade"


# --------------------------------------------------------------------------- the splitter

TRICKY = st.text(
    alphabet=st.sampled_from([*'",\\[]{}: \t\n/ab\u00e9\u2028\U0001f600', "\x00", "\x1f", "x"]),
    max_size=12,
)
SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**63), 2**64 - 1), TRICKY,
    st.floats(allow_nan=False, allow_infinity=False),
)  # fmt: skip
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(TRICKY, inner, max_size=4)),
    max_leaves=8,
)
OBJECTS = st.dictionaries(TRICKY, VALUES, max_size=4)
WS = st.sampled_from(["", "", " ", "\n", "\t ", " \r\n "])


class Style:
    """Whitespace and escape choices drawn once per example and used in turn (cheap to draw)."""

    def __init__(self, data: st.DataObject) -> None:
        self._ws = itertools.cycle(data.draw(st.lists(WS, min_size=1, max_size=32)))
        self._masks = itertools.cycle(data.draw(st.lists(st.integers(0, 7), min_size=1, max_size=8)))

    def ws(self) -> str:
        return next(self._ws)

    def mask(self) -> int:
        return next(self._masks)


def render(value: Any, style: Style) -> str:
    """JSON text of ``value`` with whitespace between tokens and valid but unusual escape spellings
    (``\\u0022``, ``\\/``, ``\\u00e9``), so it is usually *not* what orjson would write."""
    ws = style.ws
    if isinstance(value, dict):
        items = [f"{ws()}{render(k, style)}{ws()}:{ws()}{render(v, style)}{ws()}" for k, v in value.items()]
        return "{" + ",".join(items) + ws() + "}"
    if isinstance(value, list):
        return "[" + ",".join(f"{ws()}{render(v, style)}{ws()}" for v in value) + ws() + "]"
    if isinstance(value, str):
        mask = style.mask()
        out = []
        for ch in value:
            if ch in '"\\' or ch < " ":
                out.append(f"\\u{ord(ch):04x}" if mask & 1 else orjson.dumps(ch).decode()[1:-1])
            elif ch == "/" and mask & 2:
                out.append("\\/")
            elif mask & 4 and 0x7F < ord(ch) < 0x10000:
                out.append(f"\\u{ord(ch):04x}")
            else:
                out.append(ch)
        return '"' + "".join(out) + '"'
    return orjson.dumps(value).decode()


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objs=st.lists(OBJECTS, max_size=6), data=st.data())
def test_split_elements_are_substrings_of_any_array_frame(objs: list[dict[str, Any]], data: st.DataObject) -> None:
    style = Style(data)
    texts = [render(o, style) for o in objs]
    frame = (style.ws() + "[" + ",".join(f"{style.ws()}{t}{style.ws()}" for t in texts) + "]" + style.ws()).encode()
    assert orjson.loads(frame) == objs  # the rendering is valid JSON of the objects
    messages = pm.split_frame(frame)
    if not objs:
        assert messages == []
        return
    assert len(messages) == len(objs)
    pos = 0
    for text, obj, (data_bytes, *_rest) in zip(texts, objs, messages, strict=True):
        assert data_bytes == text.encode(), "each element is exactly its original bytes"
        at = frame.index(data_bytes, pos)
        pos = at + len(data_bytes)
        assert orjson.loads(data_bytes) == obj
    spans = pm.scan_array(frame)
    assert spans is not None and [frame[a:b] for a, b in spans] == [t.encode() for t in texts]


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(values=st.lists(VALUES, max_size=6), data=st.data())
def test_scanner_finds_elements_of_any_array(values: list[Any], data: st.DataObject) -> None:
    """Elements of any kind, nested arrays included."""
    style = Style(data)
    texts = [render(v, style) for v in values]
    frame = ("[" + ",".join(f"{style.ws()}{t}{style.ws()}" for t in texts) + "]").encode()
    spans = pm.scan_array(frame)
    assert spans is not None
    assert [frame[a:b] for a, b in spans] == [t.encode() for t in texts]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objs=st.lists(OBJECTS, min_size=1, max_size=4), data=st.data())
def test_broken_frames_never_half_route(objs: list[dict[str, Any]], data: st.DataObject) -> None:
    frame = render(objs, Style(data)).encode()
    cut = data.draw(st.integers(0, len(frame) - 1))
    broken = frame[:cut] + data.draw(st.sampled_from([b"", b",", b"]", b"}", b'"', b"\\"]))
    try:
        orjson.loads(broken)
    except orjson.JSONDecodeError:
        assert pm.split_frame(broken) == [(broken, "unparsed", None, None)]


@pytest.mark.parametrize("depth", [253, 254, 300, 1020])
def test_elements_nested_deeper_than_orjson_writes_are_still_split(depth: int) -> None:
    deep = b"[" * depth + b"]" * depth  # orjson reads up to 1,024 levels but writes only 254
    first = b'{"event_type":"book","asset_id":"1","x":' + deep + b"}"
    second = b'{"event_type":"last_trade_price","asset_id":"2"}'
    frame = b"[" + first + b", " + second + b"]"
    assert [(m[0], m[1], m[2]) for m in pm.split_frame(frame)] == [(first, "book", "1"),
                                                                         (second, "last_trade_price", "2")]
