"""Gamma objects → secmaster rows (pure)."""

from __future__ import annotations

from typing import Any

from ingest_daemons.secmaster import polymarket_rows as rows
from ingest_daemons.secmaster.store import POLYMARKET_TABLES

YES = "76043073756653678226373981964075571318267289248134717369284518995922789326425"
NO = "31690934263385727664202099278545688007799199447969475608906331829650099442770"
CONDITION = "0x311d0c4b6671ab54af4970c06fcf58662516f5168997bdda209ec3db5aa6b0c1"


def gamma_market(**over: Any) -> dict[str, Any]:
    market = {
        "id": "1031769", "question": "Will NVIDIA (NVDA) close above $240 end of January?",
        "conditionId": CONDITION, "slug": "nvda-above-240-on-january-30-2026",
        "outcomes": '["Yes", "No"]', "outcomePrices": '["0.52", "0.48"]', "clobTokenIds": f'["{YES}", "{NO}"]',
        "active": True, "closed": False, "negRisk": False, "endDate": "2026-01-30T21:00:00Z",
        "createdAt": "2026-01-02T10:00:00Z", "category": None,
    }  # fmt: skip
    market.update(over)
    return market


def gamma_event(markets: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "id": "125819", "slug": "nvda-above-in-january-2026", "title": "Will NVIDIA close above ___?",
        "tags": [{"id": "21", "label": "Tech", "slug": "tech"}, {"id": "1", "label": "Business", "slug": "business"}],
        "markets": markets,
    }  # fmt: skip


def category_of(tags: list[str]) -> str | None:
    return "Business" if "business" in tags else None


def test_event_market_and_tokens_map_to_the_three_levels() -> None:
    series, events, tokens, skipped = rows.event_rows("polymarket", gamma_event([gamma_market()]), category_of)
    assert skipped == 0 and series is not None
    assert (series["ticker"], series["category"], series["tags"]) == ("125819", "Business", ["tech", "business"])
    assert set(series) == set(POLYMARKET_TABLES["series"].column_names)
    [event] = events
    assert (event["event_ticker"], event["series_ticker"], event["exchange_id"]) == (CONDITION, "125819", "1031769")
    assert set(event) == set(POLYMARKET_TABLES["events"].column_names)
    assert [(t["ticker"], t["outcome"], t["outcome_index"], t["status"]) for t in tokens] == [
        (YES, "Yes", 0, "active"), (NO, "No", 1, "active"),
    ]  # fmt: skip
    assert all(set(t) == set(POLYMARKET_TABLES["markets"].column_names) for t in tokens)
    assert all(isinstance(t["ticker"], str) for t in tokens)


def test_closed_market_tokens_carry_the_result() -> None:
    mapped = rows.market_rows("polymarket", gamma_market(closed=True, outcomePrices='["0", "1"]'), "125819")
    assert mapped is not None
    assert [(t["status"], t["result"]) for t in mapped[1]] == [("closed", "lost"), ("closed", "won")]
    unresolved = rows.market_rows("polymarket", gamma_market(closed=True, outcomePrices='["0.5", "0.5"]'), "1")
    assert unresolved is not None and [t["result"] for t in unresolved[1]] == [None, None]
    inactive = rows.market_rows("polymarket", gamma_market(active=False), "1")
    assert inactive is not None and {t["status"] for t in inactive[1]} == {"inactive"}


def test_misaligned_or_numeric_token_arrays_are_skipped_whole() -> None:
    assert rows.market_rows("polymarket", gamma_market(clobTokenIds=f'["{YES}"]'), "1") is None
    assert rows.market_rows("polymarket", gamma_market(clobTokenIds=f"[{YES}, {NO}]"), "1") is None  # numbers
    assert rows.market_rows("polymarket", gamma_market(outcomes="not json"), "1") is None
    assert rows.market_rows("polymarket", gamma_market(conditionId=None), "1") is None
    _, events, tokens, skipped = rows.event_rows(
        "polymarket", gamma_event([gamma_market(clobTokenIds="[]"), gamma_market()]), category_of
    )
    assert skipped == 1 and len(events) == 1 and len(tokens) == 2


def test_parent_event_from_the_market_itself() -> None:
    mapped = rows.market_rows("polymarket", gamma_market(events=[{"id": "777"}]), None)
    assert mapped is not None and mapped[0]["series_ticker"] == "777"
