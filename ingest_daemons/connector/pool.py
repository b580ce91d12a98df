"""A shard's markets over its connections, none past the feed's ``markets_per_connection``.

Live additions (shard membership, CDC) go to the first connection with room and open a new
connection when every one is full, so a venue with a hard per-socket limit (Polymarket: 500 assets,
protocols B1) never receives a subscription it would refuse or silently drop. Removals go to every
connection holding the market.
"""

from __future__ import annotations

from collections.abc import Callable

from ingest_daemons.connector.session import VenueSession


class SessionPool:
    def __init__(self, sessions: list[VenueSession], per_connection: int,
                 open_session: Callable[[list[str]], VenueSession]) -> None:
        self.sessions = sessions  # shared with the connector: opened sessions appear there too
        self.per_connection = per_connection
        self.open_session = open_session  # creates, registers and starts a session for these markets

    @property
    def markets(self) -> list[str]:
        return [t for s in self.sessions for t in s.markets]

    async def add_markets(self, tickers: list[str]) -> list[str]:
        held = set(self.markets)
        new = [t for t in dict.fromkeys(tickers) if t not in held]
        added: list[str] = []
        for session in list(self.sessions):
            room = self.per_connection - len(session.markets)
            if new and room > 0:
                take, new = new[:room], new[room:]
                added += await session.add_markets(take)
        for start in range(0, len(new), self.per_connection):
            batch = new[start : start + self.per_connection]
            self.open_session(batch)
            added += batch
        return added

    async def remove_markets(self, tickers: list[str]) -> list[str]:
        wanted = set(tickers)
        gone: list[str] = []
        for session in list(self.sessions):
            if wanted & set(session.markets):
                gone += await session.remove_markets(tickers)
        return sorted(gone)
