"""``json_check`` gives orjson's verdict, and the stamps read from its document are a dict's.

Differential: every text below is judged by ``orjson.loads`` (the reference, what the archive and the
Polymarket adapter used before) and by :func:`ingest_daemons.json_check.is_json`, which must agree —
the recorded samples (every line of ``tests/data/samples`` and, where present, ``../shared/samples``),
each one truncated at every byte, with trailing bytes, with bytes replaced by invalid UTF-8, plus a
list of hand-picked edge cases and generated JSON with random bytes flipped.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingest_daemons import json_check
from tests.helpers import orjson_accepts

REPO = Path(__file__).resolve().parents[2]
SAMPLE_DIRS = [REPO / "tests" / "data" / "samples", REPO.parent / "shared" / "samples"]


def samples() -> list[bytes]:
    lines: list[bytes] = []
    for folder in SAMPLE_DIRS:
        if folder.is_dir():
            for path in sorted(folder.glob("*.json*")):
                data = path.read_bytes()
                lines += [line for line in data.splitlines() if line.strip()] if path.suffix == ".jsonl" else [data]
    return list(dict.fromkeys(lines))  # the shared folder and the repository's copy overlap


def disagreements(texts: list[bytes]) -> list[bytes]:
    return [t for t in texts if json_check.is_json(t) != orjson_accepts(t)]


EDGE_CASES: list[bytes] = [
    b"", b" ", b"1", b"-0", b"01", b"-", b"1.", b"1.e5", b"1e", b"1e+", b".5", b"+1", b"1E5", b"-01", b"0x10",
    b"NaN", b"Infinity", b"-Infinity", b"nan", b"[NaN]", b'{"a":NaN}', b'{"a":Infinity}', b'{"a":-Infinity}',
    b"18446744073709551615", b"18446744073709551616", b"-9223372036854775808", b"-9223372036854775809",
    b"123456789012345678901234567890", b'{"a":123456789012345678901234567890}', b'{"a":' + b"9" * 400 + b"}",
    b'{"a":' + b"9" * 5000 + b"}", b"1e308", b"1e309", b"1e400", b'{"a":1e400}', b"-1e400", b'{"a":1e-400}',
    b'{"a":1.7976931348623157e308}', b'{"a":1.7976931348623159e308}', b'{"a":-0.0e-0}',
    b'{"a":1}x', b'{"a":1} ', b' {"a":1}', b'{"a":1}\t', b'{"a":1}\x00', b'{"a":1}\x0c', b'{"a":\x0c1}',
    b'{"a":1}\xc2\xa0', b'{"a":1}{"b":2}', b'{"a":1,}', b"[1,]", b'{"a" 1}', b"[1 2]", b'{"a":1 "b":2}',
    b"{a:1}", b"{'a':1}", b'{"a":[1,2', b'{"a":"', b'{"a":tRue}', b"tru", b"true", b"null", b'"str"',
    b'{"a":1,"a":2}', b'{"msg":{"ts_ms":1,"ts_ms":2}}',
    b'{"\xff":1}', b'{"a":"\xff"}', b'{"a":"\xc3\xa9"}', b'{"a":"\xc3"}', b'{"a":"\xed\xa0\x80"}',
    b'{"a":"\xf4\x90\x80\x80"}', b'{"a":"\xc0\xaf"}', b'\xef\xbb\xbf{"a":1}',
    b'{"a":"\\ud800"}', b'{"a":"\\udc00"}', b'{"a":"\\ud800\\udc00"}', b'{"a":"\\ud800x"}', b'{"a":"\\u00"}',
    b'{"a":"\\x"}', b'{"a":"\\/"}', b'{"a":"a\tb"}', b'{"a":"a\x01b"}', b'{"a":"\x7f"}', b'{"\\u006dsg":1}',
    b'{"a":/*c*/1}', b'{"a":1}//c',
]
for depth in (512, 1023, 1024, 1025, 1100, 3000):
    EDGE_CASES += [b"[" * depth + b"]" * depth, b'{"a":' * depth + b"1" + b"}" * depth,
                   b'["' + b"[" * depth + b'"]', b"[" * depth]


def test_every_edge_case_gets_orjsons_verdict() -> None:
    assert not disagreements(EDGE_CASES)
    # The cases are not all one kind: both verdicts occur, depth on both sides of orjson's limit.
    assert {orjson_accepts(t) for t in EDGE_CASES} == {True, False}
    assert orjson_accepts(b"[" * 1024 + b"]" * 1024) and not orjson_accepts(b"[" * 1025 + b"]" * 1025)


def test_every_sample_and_every_truncation_trailer_and_bad_byte_of_it_gets_orjsons_verdict() -> None:
    lines = samples()
    assert len(lines) > 300
    texts: list[bytes] = []
    for line in lines:
        texts.append(line)
        if len(line) > 4096:  # whole only: variants of the big REST documents add time, not cases
            continue
        texts += [line[:cut] for cut in range(0, len(line), max(1, len(line) // 41))]
        texts += [line + tail for tail in (b" ", b"\n", b"x", b"}", b"]", b",", b"\x00", b"\xff")]
        for at in range(0, len(line), max(1, len(line) // 7)):
            for bad in (b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x01", b'"', b"\\", b"1e999"):
                texts.append(line[:at] + bad + line[at + 1 :])
    assert sum(map(orjson_accepts, texts)) > len(lines)  # valid and invalid both represented
    assert not disagreements(texts)


_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
                     st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12))
_VALUES = st.recursive(_SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                          st.dictionaries(st.text(max_size=6), inner, max_size=4)),
                       max_leaves=20)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=_VALUES, indent=st.booleans(), flips=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)),
                                                           max_size=3), cut=st.integers(0, 10_000))
def test_generated_json_with_bytes_flipped_or_cut_gets_orjsons_verdict(
    value: Any, indent: bool, flips: list[tuple[int, int]], cut: int
) -> None:
    text = bytearray(json.dumps(value, indent=2 if indent else None, ensure_ascii=not indent).encode())
    assert json_check.is_json(bytes(text))
    for at, byte in flips:
        if text:
            text[at % len(text)] = byte
    mutated = bytes(text)
    assert json_check.is_json(mutated) == orjson_accepts(mutated), mutated
    cut_text = mutated[: cut % (len(mutated) + 1)]
    assert json_check.is_json(cut_text) == orjson_accepts(cut_text), cut_text


def test_msgspec_skipping_is_not_a_validator() -> None:
    """Why json_check does not decode with msgspec: values it skips are not checked as orjson checks
    them (invalid UTF-8 in a string, a number past a double's range)."""

    class Stamp(msgspec.Struct):
        ts_ms: Any = None

    for text in (b'{"a":"\xff","ts_ms":1}', b'{"a":1e400,"ts_ms":1}'):
        assert not orjson_accepts(text)
        msgspec.json.decode(text, type=Stamp)
        msgspec.json.decode(text, type=msgspec.Raw)
        assert not json_check.is_json(text)


def test_a_json_check_document_or_none_means_valid_and_invalid_raises() -> None:
    assert json_check.document(b'{"msg":{"ts_ms":1}}').get_pointer("/msg/ts_ms") == 1
    with pytest.raises(ValueError):
        json_check.document(b'{"a":')
    with pytest.raises(ValueError):
        json_check.document(b"[" * 1025 + b"]" * 1025)
    assert json_check.document(b"[" * 1024 + b"]" * 1024) is not None


@pytest.mark.parametrize("levels", [1, 1023, 1024, 1030])
def test_too_deep_for_a_line_counts_real_nesting_only(levels: int) -> None:
    inner = b"[" * (levels - 1) + b"]" * (levels - 1) if levels > 1 else b"0"
    text = b'{"s":"' + b"[{" * 1500 + b'\\"[","d":' + inner + b"}"  # brackets (and an escaped quote) in a string
    assert json_check.too_deep_for_a_line(text) is (levels >= json_check.MAX_DEPTH)
    assert orjson_accepts(text) is (levels <= json_check.MAX_DEPTH)  # valid JSON to orjson up to its limit
