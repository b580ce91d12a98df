"""The simulated Kraken universe: spot pairs and futures instruments, and their REST listings.

Prices and quantities are integers in units of the pair's last decimal (``pair_decimals``,
``lot_decimals``): the simulator writes decimal text by formatting those integers, never floats.
REST and the sockets read the same objects, so ``AssetPairs``/``instruments`` list exactly the
symbols the socket accepts. Spot REST keeps Kraken's legacy names (``XXBTZUSD``, ``wsname``
``XBT/USD``) while the v2 socket says ``BTC/USD`` (protocols §C1, §D8).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

# v2 symbols the legacy REST names spell differently (§D8: XBT vs BTC).
V2_ASSET_NAMES: Final = {"XBT": "BTC", "XDG": "DOGE"}

# (v2 symbol, REST key, REST base, REST quote, pair_decimals, lot_decimals, starting mid price text)
_KNOWN_SPOT: Final = (
    ("BTC/USD", "XXBTZUSD", "XXBT", "ZUSD", 1, 8, "63388.7"),
    ("ETH/USD", "XETHZUSD", "XETH", "ZUSD", 2, 8, "3105.42"),
    ("XRP/USD", "XXRPZUSD", "XXRP", "ZUSD", 5, 8, "0.52741"),
    ("SOL/USD", "SOLUSD", "SOL", "ZUSD", 2, 8, "142.37"),
    ("DOGE/USD", "XDGUSD", "XXDG", "ZUSD", 7, 8, "0.1234567"),
    ("ETH/BTC", "XETHXXBT", "XETH", "XXBT", 5, 8, "0.04899"),
)
# (product id, type, tick decimals, qty decimals, starting mid price text)
_KNOWN_FUTURES: Final = (
    ("PF_XBTUSD", "flexible_futures", 0, 4, "65368"),
    ("PF_ETHUSD", "flexible_futures", 1, 3, "1907.4"),
    ("PI_XBTUSD", "futures_inverse", 1, 0, "65370.5"),
    ("PI_ETHUSD", "futures_inverse", 2, 0, "1907.45"),
    ("FI_XBTUSD_270326", "futures_inverse", 1, 0, "65800.0"),
)


def units(text: str, decimals: int) -> int:
    whole, _, frac = text.partition(".")
    return int(whole + frac.ljust(decimals, "0")[:decimals])


def text(value: int, decimals: int) -> str:
    """``value`` units as fixed-point text with exactly ``decimals`` decimals (``0.00000000``)."""
    if decimals == 0:
        return str(value)
    sign = "-" if value < 0 else ""
    whole, frac = divmod(abs(value), 10**decimals)
    return f"{sign}{whole}.{frac:0{decimals}d}"


@dataclass(frozen=True, slots=True)
class SpotPair:
    symbol: str  # the v2 socket's name, e.g. BTC/USD
    rest_key: str
    base: str
    quote: str
    price_decimals: int
    lot_decimals: int
    mid: int  # starting mid price, in price units

    @property
    def wsname(self) -> str:
        """The legacy name REST publishes (``XBT/USD`` for the socket's ``BTC/USD``)."""
        base, quote = self.symbol.split("/")
        legacy = {v: k for k, v in V2_ASSET_NAMES.items()}
        return f"{legacy.get(base, base)}/{legacy.get(quote, quote)}"

    def rest_json(self) -> dict[str, Any]:
        return {
            "altname": self.wsname.replace("/", ""),
            "wsname": self.wsname,
            "aclass_base": "currency",
            "base": self.base,
            "aclass_quote": "currency",
            "quote": self.quote,
            "lot": "unit",
            "cost_decimals": 5,
            "pair_decimals": self.price_decimals,
            "lot_decimals": self.lot_decimals,
            "lot_multiplier": 1,
            "tick_size": text(1, self.price_decimals),
            "ordermin": text(10 ** max(self.lot_decimals - 4, 0), self.lot_decimals),
            "status": "online",
        }


@dataclass(frozen=True, slots=True)
class FuturesInstrument:
    symbol: str  # product id, e.g. PF_XBTUSD
    kind: str
    price_decimals: int
    lot_decimals: int
    mid: int

    def rest_json(self) -> dict[str, Any]:
        base = self.symbol.split("_")[1][:-3]
        return {
            "symbol": self.symbol,
            "type": self.kind,
            "underlying": "rr_" + self.symbol.split("_")[1].lower(),
            "tickSize": 10.0**-self.price_decimals,
            "contractSize": 1,
            "tradeable": True,
            "base": base,
            "quote": "USD",
            "pair": f"{base}:USD",
            "contractValuePrecision": self.lot_decimals,
            "postOnly": False,
        }


def spot_pairs(n: int) -> list[SpotPair]:
    """The well-known pairs first, then ``SIMk/USD`` until there are ``n``."""
    out = [SpotPair(s, k, b, q, pd, ld, units(m, pd)) for s, k, b, q, pd, ld, m in _KNOWN_SPOT[:n]]
    for k in range(len(out), n):
        out.append(SpotPair(f"SIM{k}/USD", f"SIM{k}USD", f"SIM{k}", "ZUSD", 4, 6, 10_000 + 137 * k))
    return out


def futures_instruments(n: int) -> list[FuturesInstrument]:
    out = [FuturesInstrument(s, t, pd, ld, units(m, pd)) for s, t, pd, ld, m in _KNOWN_FUTURES[:n]]
    for k in range(len(out), n):
        out.append(FuturesInstrument(f"PF_SIM{k}USD", "flexible_futures", 3, 2, 20_000 + 911 * k))
    return out


def asset_pairs_json(pairs: list[SpotPair]) -> dict[str, Any]:
    return {"error": [], "result": {p.rest_key: p.rest_json() for p in pairs}}


def instruments_json(instruments: list[FuturesInstrument]) -> dict[str, Any]:
    return {"result": "success", "instruments": [i.rest_json() for i in instruments]}
