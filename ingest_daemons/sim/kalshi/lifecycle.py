"""Market state changes and the ``market_lifecycle_v2`` events each one implies (protocols.md §A5).

Pure functions over the universe: the simulator applies a change here, then hands the returned
event types to every connection's lifecycle subscriptions. Keeping the rules in one place keeps
REST (which reads the universe) and the WebSocket stream (which announces the change) consistent.
"""

from __future__ import annotations

import random
from datetime import datetime, timedelta

from ingest_daemons.sim.kalshi import spec
from ingest_daemons.sim.kalshi.universe import SimEvent, SimMarket, Universe, new_market, settle


def apply_status(m: SimMarket, status: str, now: datetime, result: str = "yes") -> list[str]:
    """Move ``m`` to ``status`` (REST vocabulary); return the lifecycle event types to announce.

    - active → inactive: ``deactivated``; inactive → active: ``activated`` (an unpause).
    - initialized → active: nothing (§A5 / KML: no ``activated`` for a scheduled open).
    - → closed: ``close_date_updated`` with close time = ``now`` (an early close).
    - → determined: ``determined`` with ``result``; → finalized: ``determined`` first if the
      market was not determined yet, then ``settled``.
    """
    if status not in spec.MARKET_STATUSES:
        raise ValueError(f"unknown status {status!r}; use one of {spec.MARKET_STATUSES}")
    if result not in ("yes", "no"):
        raise ValueError("result must be 'yes' or 'no'")
    old = m.status
    emitted: list[str] = []
    if status == old:
        return emitted
    if status == spec.STATUS_INACTIVE:
        emitted.append("deactivated")
    elif status == spec.STATUS_ACTIVE and old == spec.STATUS_INACTIVE:
        emitted.append("activated")
    elif status == spec.STATUS_CLOSED:
        m.close_time = now
        emitted.append("close_date_updated")
    elif status in (spec.STATUS_DETERMINED, spec.STATUS_FINALIZED):
        if m.determination_time is None:
            m.close_time = min(m.close_time, now)
            settle(m, result, now)
            emitted.append("determined")
        if status == spec.STATUS_FINALIZED:
            m.settlement_time = now
            emitted.append("settled")
    m.status = status
    return emitted


def create_market(
    universe: Universe,
    rng: random.Random,
    now: datetime,
    *,
    series_ticker: str | None,
    event_ticker: str | None,
    ticker: str | None,
    status: str,
    title: str | None,
    strike_type: str | None,
    floor_strike: str | None,
    close_in: timedelta,
) -> tuple[SimMarket, SimEvent | None]:
    """Add a market (and its event when new) to ``universe``; returns it and the new event, if any.

    Defaults: the first series, a fresh event ``{series}-SIM{n}`` and ticker ``{event}-T{n}.5``.
    """
    if not universe.series:
        raise ValueError("the universe has no series to add a market to")
    series = universe.series[series_ticker] if series_ticker else next(iter(universe.series.values()))
    n = len(universe.markets) + 1
    event_ticker = event_ticker or f"{series.ticker}-SIM{n}"
    created: SimEvent | None = None
    if event_ticker not in universe.events:
        created = SimEvent(
            event_ticker=event_ticker,
            series_ticker=series.ticker,
            title=title or f"{series.title} (simulated event {n})",
            sub_title="Simulated",
            category=series.category,
            strike_date=now + close_in,
        )
        universe.add_event(created)
    event = universe.events[event_ticker]
    market = new_market(
        rng,
        ticker=ticker or f"{event_ticker}-T{n}.5",
        event=event,
        status=status,
        open_time=now if status != spec.STATUS_INITIALIZED else now + close_in / 2,
        close_time=now + close_in,
        created_time=now,
        yes_sub_title=f"Above {floor_strike}" if floor_strike else "",
        strike_type=strike_type,
        floor_strike=floor_strike,
    )
    universe.add_market(market)
    return market, created
