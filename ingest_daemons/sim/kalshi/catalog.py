"""The generated universe: which series exist, and what their events' and markets' tickers look like.

Tickers follow the shapes seen on the real exchange (protocols.md §A8): dotted decimal strikes
(``KXBTCD-26FEB1217-T72749.99``, ``KXHIGHNY-26NOV25-B53.5``, ``KXXRP-26FEB1317-B1.3899500``),
negative thresholds (``KXCPI-26NOV-TN0.1``), plain 3-segment ones (``KXBTC15M-26JUL191145-45``) and a
market whose ticker equals its event ticker (``KXBALANCE-29``). Consumers must not parse them; the
universe says which event and series each market belongs to.

Generation is deterministic for a given ``seed`` and base day, so tests can name markets.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from ingest_daemons.sim.kalshi import spec
from ingest_daemons.sim.kalshi.universe import SimEvent, SimSeries, Universe, new_market

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")


def _yymon(d: datetime) -> str:
    return f"{d.year % 100:02d}{_MONTHS[d.month - 1]}"


def _yymondd(d: datetime) -> str:
    return f"{_yymon(d)}{d.day:02d}"


@dataclass(frozen=True, slots=True)
class _MarketSpec:
    suffix: str | None  # None: market ticker == event ticker
    yes_sub_title: str
    strike_type: str | None
    floor_strike: str | None
    cap_strike: str | None


@dataclass(frozen=True, slots=True)
class _EventSpec:
    event_ticker: str
    title: str
    sub_title: str
    close_time: datetime
    markets: list[_MarketSpec]


@dataclass(frozen=True, slots=True)
class _SeriesTemplate:
    series: SimSeries
    max_markets: int
    # (event index, event time, markets wanted) -> the event and its markets
    make_event: Callable[[int, datetime, int], _EventSpec]
    period: timedelta


def _btcd(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXBTCD-{_yymondd(when)}{when.hour:02d}"
    mk = []
    for i in range(n):
        strike = 72750 + 250 * (i - n // 2)
        floor = f"{strike - 0.01:.2f}"
        mk.append(_MarketSpec(f"T{floor}", f"${strike:,} or above", "greater", floor, None))
    return _EventSpec(et, f"Bitcoin price at {when:%H}:00 UTC?", f"{when:%b %d %H}:00", when, mk)


def _xrp(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXXRP-{_yymondd(when)}{when.hour:02d}"
    mk = []
    for i in range(n):
        lo = 1.38 + 0.02 * (i - n // 2)
        mid = lo + 0.00995
        mk.append(
            _MarketSpec(
                f"B{mid:.7f}", f"${lo:.2f} to {lo + 0.0199:.4f}", "between", f"{lo:.4f}", f"{lo + 0.0199:.4f}"
            )
        )
    return _EventSpec(et, f"XRP price range at {when:%H}:00 UTC?", f"{when:%b %d %H}:00", when, mk)


def _btc15m(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXBTC15M-{_yymondd(when)}{when.hour:02d}{when.minute:02d}"
    mk = [_MarketSpec(f"{when.minute:02d}", "Price up", "greater", "0", None)]
    return _EventSpec(et, "BTC price up in next 15 mins?", f"{when:%H:%M}", when, mk[:n])


def _highny(k: int, when: datetime, n: int) -> _EventSpec:
    """Edge markets (``T43`` below, ``T{top}`` above) around ``B{x}.5`` ranges; ranges first when small."""
    et = f"KXHIGHNY-{_yymondd(when)}"
    inner = n - 2 if n >= 3 else n
    mk = []
    for i in range(inner):
        lo = 44 + 2 * i
        mk.append(_MarketSpec(f"B{lo}.5", f"{lo}° to {lo + 1}°", "between", str(lo), str(lo + 1)))
    if n >= 3:
        top = 44 + 2 * inner
        mk.insert(0, _MarketSpec("T43", "42° or below", "less", None, "43"))
        mk.append(_MarketSpec(f"T{top}", f"{top + 1}° or above", "greater", str(top), None))
    title = f"Highest temperature in NYC on {when:%b %d, %Y}?"
    return _EventSpec(et, title, f"On {when:%b %d}", when, mk)


def _cpi(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXCPI-{_yymon(when)}"
    mk = []
    for i in range(n):
        v = -0.1 + 0.1 * i
        text = f"N{-v:.1f}" if v < 0 else f"{v:.1f}"
        mk.append(_MarketSpec(f"T{text}", f"Above {v:.1f}%", "greater", f"{v:.1f}", None))
    return _EventSpec(et, f"CPI in {when:%b %Y}?", f"{when:%b %Y}", when, mk)


def _fed(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXFED-{_yymon(when)}"
    mk = []
    for i in range(n):
        v = 3.25 + 0.25 * i
        mk.append(_MarketSpec(f"T{v:.2f}", f"Above {v:.2f}%", "greater", f"{v:.2f}", None))
    return _EventSpec(et, f"Fed funds rate after {when:%b %Y} meeting?", f"{when:%b %Y}", when, mk)


def _balance(k: int, when: datetime, n: int) -> _EventSpec:
    yy = 29 + k
    et = f"KXBALANCE-{yy}"
    return _EventSpec(
        et,
        "Will the budget be balanced?",
        f"Fiscal 20{yy}",
        when,
        [_MarketSpec(None, f"By 20{yy}", None, None, None)],
    )


def _inxd(k: int, when: datetime, n: int) -> _EventSpec:
    et = f"KXINXD-{_yymondd(when)}H1600"
    mk = []
    for i in range(n):
        lo = 6000 + 25 * (i - n // 2)
        mk.append(
            _MarketSpec(
                f"B{lo + 12}", f"{lo:,} to {lo + 24.99:,.2f}", "between", str(lo), f"{lo + 24.99:.2f}"
            )
        )
    return _EventSpec(et, f"S&P 500 close on {when:%b %d, %Y}?", f"{when:%b %d}", when, mk)


_TEAMS = (("WSH", "ATH"), ("NYY", "BOS"), ("LAD", "SF"), ("CHC", "STL"))


def _mlb(k: int, when: datetime, n: int) -> _EventSpec:
    away, home = _TEAMS[k % len(_TEAMS)]
    et = f"KXMLBGAME-{_yymondd(when)}{when.hour:02d}{when.minute:02d}{away}{home}"
    mk = [_MarketSpec(team, f"{team} wins", None, None, None) for team in (home, away)]
    return _EventSpec(et, f"{away} vs {home}", f"{when:%b %d}", when, mk[:n])


def _templates() -> list[_SeriesTemplate]:
    src = [{"name": "Simulated source", "url": "https://example.invalid/"}]

    def ser(ticker: str, title: str, category: str, tags: list[str], freq: str) -> SimSeries:
        return SimSeries(ticker, title, category, tags, freq, settlement_sources=list(src))

    day, hour = timedelta(days=1), timedelta(hours=1)
    return [
        _SeriesTemplate(ser("KXBTCD", "Bitcoin price today", "Crypto", ["BTC"], "hourly"), 6, _btcd, hour),
        _SeriesTemplate(
            ser(
                "KXHIGHNY",
                "Highest temperature in NYC",
                "Climate and Weather",
                ["Daily temperature"],
                "daily",
            ),
            6,
            _highny,
            day,
        ),
        _SeriesTemplate(ser("KXCPI", "CPI", "Economics", ["Inflation"], "monthly"), 5, _cpi, 31 * day),
        _SeriesTemplate(
            ser("KXBALANCE", "Balanced budget", "Politics", ["Budget"], "one_off"), 1, _balance, 365 * day
        ),
        _SeriesTemplate(ser("KXINXD", "S&P 500 daily range", "Financials", ["S&P"], "daily"), 5, _inxd, day),
        _SeriesTemplate(ser("KXXRP", "XRP price range", "Crypto", ["XRP"], "hourly"), 4, _xrp, hour),
        _SeriesTemplate(ser("KXFED", "Fed funds rate", "Economics", ["Fed"], "custom"), 4, _fed, 42 * day),
        _SeriesTemplate(
            ser("KXMLBGAME", "Pro baseball game", "Sports", ["Baseball"], "custom"), 2, _mlb, 3 * hour
        ),
        _SeriesTemplate(
            ser("KXBTC15M", "BTC 15 minute", "Crypto", ["BTC"], "fifteen_min"), 1, _btc15m, hour / 4
        ),
    ]


def _status_for_event(index: int) -> str:
    """A fixed pattern, so every universe of ~20+ markets has non-active markets for REST filters."""
    if index % 16 == 15:
        return spec.STATUS_INACTIVE
    if index % 16 == 7:
        return spec.STATUS_FINALIZED
    return {5: spec.STATUS_INITIALIZED, 6: spec.STATUS_CLOSED}.get(index % 8, spec.STATUS_ACTIVE)


def build_universe(n_markets: int, *, seed: int = 1, now: datetime | None = None) -> Universe:
    """Build ``n_markets`` markets spread over several series and categories.

    Series are visited round-robin, one event each per round, so even a small universe covers every
    category; events get ``n_markets // len(series)`` markets (at least 1, at most the series' own
    maximum). Times are relative to the start of ``now``'s UTC day, so tickers stay stable within a
    day for a given seed.
    """
    if n_markets < 0:
        raise ValueError("n_markets must be >= 0")
    rng = random.Random(seed)
    now = now or datetime.now(UTC)
    base = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    templates = _templates()
    per_event = max(1, n_markets // len(templates))
    universe = Universe()
    event_index = 0
    rounds = 0
    while len(universe.markets) < n_markets:
        for tpl in templates:
            if len(universe.markets) >= n_markets:
                break
            status = _status_for_event(event_index)
            event_index += 1
            past = status in (spec.STATUS_CLOSED, spec.STATUS_FINALIZED)
            # Future events start tomorrow (17:00 UTC for intraday series), so an `active` market never
            # has a close time in the past whatever the hour the universe is built.
            start = base + timedelta(days=1, hours=17 if tpl.period < timedelta(days=1) else 0)
            when = (base - tpl.period * (rounds + 1)) if past else (start + tpl.period * rounds)
            want = min(tpl.max_markets, per_event, n_markets - len(universe.markets))
            ev = tpl.make_event(rounds, when, want)
            if ev.event_ticker in universe.events:
                continue
            universe.add_series(tpl.series)
            event = SimEvent(
                event_ticker=ev.event_ticker,
                series_ticker=tpl.series.ticker,
                title=ev.title,
                sub_title=ev.sub_title,
                category=tpl.series.category,
                mutually_exclusive=any(m.strike_type == "between" for m in ev.markets),
                strike_date=ev.close_time,
            )
            universe.add_event(event)
            open_time = ev.close_time - max(tpl.period, timedelta(days=2))
            if status == spec.STATUS_INITIALIZED:
                open_time = base + timedelta(days=1)
            for ms in ev.markets:
                ticker = ev.event_ticker if ms.suffix is None else f"{ev.event_ticker}-{ms.suffix}"
                universe.add_market(
                    new_market(
                        rng,
                        ticker=ticker,
                        event=event,
                        status=status,
                        open_time=open_time,
                        close_time=max(ev.close_time, open_time + timedelta(hours=1)),
                        created_time=open_time - timedelta(days=1),
                        yes_sub_title=ms.yes_sub_title,
                        strike_type=ms.strike_type,
                        floor_strike=ms.floor_strike,
                        cap_strike=ms.cap_strike,
                    )
                )
        rounds += 1
    return universe
