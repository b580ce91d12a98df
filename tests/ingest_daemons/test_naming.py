from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ingest_daemons import naming
from ingest_daemons.naming import (
    InvalidToken,
    SubjectBuilder,
    escape_token,
    parse_subject,
    slug,
    stream_name,
    unescape_token,
)

NATS_FORBIDDEN = set(".*> \t\r\n")


def assert_single_token(token: str) -> None:
    assert token, "a token is never empty"
    assert not (set(token) & NATS_FORBIDDEN), token
    assert token.isascii() and token.isprintable(), token


@given(st.text())
def test_any_string_round_trips_through_one_token(value: str) -> None:
    token = escape_token(value)
    assert_single_token(token)
    assert unescape_token(token) == value


@given(st.text(), st.text())
def test_distinct_strings_never_share_a_token(a: str, b: str) -> None:
    if a != b:
        assert escape_token(a) != escape_token(b)


@given(st.text(alphabet=st.characters(codec="ascii"), min_size=1))
def test_non_canonical_tokens_are_rejected_or_round_trip(token: str) -> None:
    try:
        value = unescape_token(token)
    except InvalidToken:
        return
    assert escape_token(value) == token


@pytest.mark.parametrize(
    ("raw", "token"),
    [
        ("KXBTCD-26FEB1217-T72749.99", "KXBTCD-26FEB1217-T72749%2E99"),
        ("BTC/USD", "BTC%2FUSD"),
        ("PF_XBTUSD", "PF_XBTUSD"),
        ("Metal.XAU/USD", "Metal%2EXAU%2FUSD"),
        ("a b*c>d%", "a%20b%2Ac%3Ed%25"),
        ("", "%"),
        ("é", "%C3%A9"),
    ],
)
def test_known_escapes(raw: str, token: str) -> None:
    assert escape_token(raw) == token
    assert unescape_token(token) == raw


@pytest.mark.parametrize("bad", ["%2e", "%2", "a%", "%41", "a.b", "%FF", ""])
def test_invalid_tokens_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidToken):
        unescape_token(bad)


def _sample_tickers(samples_dir: Path) -> set[str]:
    tickers: set[str] = set()
    for path in samples_dir.glob("*.jsonl"):
        for line in path.read_text().splitlines():
            parsed = json.loads(line)
            for frame in parsed if isinstance(parsed, list) else [parsed]:
                if not isinstance(frame, dict):
                    continue
                bodies = [frame, frame.get("msg"), *(frame.get("data") or [])]
                for body in bodies:
                    if not isinstance(body, dict):
                        continue
                    for key in ("market_ticker", "event_ticker", "asset_id", "product_id", "symbol"):
                        if isinstance(body.get(key), str):
                            tickers.add(body[key])
    return tickers


def test_every_sample_ticker_makes_a_six_token_subject(samples_dir: Path) -> None:
    tickers = _sample_tickers(samples_dir)
    assert "KXBTCD-26FEB1217-T72749.99" in tickers or any("." in t for t in tickers)
    assert "BTC/USD" in tickers and "PF_XBTUSD" in tickers
    assert any(len(t) >= 76 and t.isdigit() for t in tickers), "77-digit Polymarket token ids expected"
    builder = SubjectBuilder("prod", "kalshi")
    for ticker in tickers:
        subject = builder.subject("economics", "ticker", ticker)
        assert len(subject.split(".")) == 6, subject
        assert parse_subject(subject).ticker == ticker


def test_dotted_kalshi_ticker_subject() -> None:
    subject = SubjectBuilder("prod", "kalshi").subject("economics", "trade", "KXBTCD-26FEB1217-T72749.99")
    assert subject == "prod.kalshi.economics.json.trade.KXBTCD-26FEB1217-T72749%2E99"
    assert subject.split(".")[5] == "KXBTCD-26FEB1217-T72749%2E99"


def test_slugs_and_stream_names() -> None:
    assert slug("Climate and Weather") == "climate_and_weather"
    assert slug("  Science & Technology ") == "science_technology"
    assert stream_name("prod", "kalshi", "Economics") == "PROD_KALSHI_ECONOMICS"
    assert stream_name("dev", "kalshi", naming.UNCATEGORIZED) == "DEV_KALSHI_UNCATEGORIZED"
    assert naming.cdc_stream_name("prod") == "PROD_SECMASTER_CDC"
    with pytest.raises(ValueError):
        slug("!!!")
    with pytest.raises(ValueError):
        stream_name("Prod", "kalshi", "x")
