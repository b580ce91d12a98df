"""The Kalshi simulator's WebSocket side, exercised over real sockets with a `websockets` client.

Covers protocols.md §A2 (signed upgrade), §A3/§A4 (commands, replies, error codes), §A5 (seq per
sid, snapshot before delta, lifecycle), §A6 (pings) and every fault the connector's tests rely on.
The signer below is written here from the spec, not imported from the connector.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import orjson
import pytest
import websockets
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed, InvalidStatus

from ingest_daemons.sim.kalshi import KalshiSimulator, SentFrame

WS_PATH = "/trade-api/ws/v2"
KEY_ID = "3f1c2a9e-0000-4000-8000-5e3d1c0ffee0"
CONTROL_TYPES = {"subscribed", "unsubscribed", "ok", "error"}


@pytest.fixture(scope="module")
def private_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey, fmt: str = "spki") -> bytes:
    if fmt == "pkcs1":
        return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.PKCS1)
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def signed_headers(
    key: rsa.RSAPrivateKey,
    *,
    ts_ms: int | None = None,
    path: str = WS_PATH,
    salt: int = 32,
    key_id: str = KEY_ID,
) -> dict[str, str]:
    """§A2: RSA-PSS(SHA-256, MGF1 SHA-256, salt 32) over timestamp_ms + "GET" + path, base64."""
    ts = str(int(time.time() * 1000) if ts_ms is None else ts_ms)
    pss = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=salt)
    sig = key.sign((ts + "GET" + path).encode(), pss, hashes.SHA256())
    return {
        "KALSHI-ACCESS-KEY": key_id,
        "KALSHI-ACCESS-TIMESTAMP": ts,
        "KALSHI-ACCESS-SIGNATURE": base64.b64encode(sig).decode(),
    }


@pytest.fixture
async def sim(private_key: rsa.RSAPrivateKey) -> AsyncIterator[KalshiSimulator]:
    s = KalshiSimulator(public_key_pem=public_pem(private_key), api_key_id=KEY_ID, markets=20, rate=2000.0)
    await s.start()
    try:
        yield s
    finally:
        await s.stop()


class Client:
    """A thin test client: send commands, read frames as (raw bytes, parsed dict)."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.received: list[tuple[bytes, dict[str, Any]]] = []

    async def cmd(self, cmd_id: int, cmd: str, params: dict[str, Any] | None = None) -> None:
        body: dict[str, Any] = {"id": cmd_id, "cmd": cmd}
        if params is not None:
            body["params"] = params
        await self.ws.send(orjson.dumps(body).decode())

    async def recv(self, within: float = 5.0) -> dict[str, Any]:
        raw = await asyncio.wait_for(self.ws.recv(decode=False), within)
        assert isinstance(raw, bytes)
        msg = orjson.loads(raw)
        self.received.append((raw, msg))
        return msg  # type: ignore[no-any-return]

    async def until(self, pred: Callable[[dict[str, Any]], bool], within: float = 5.0) -> dict[str, Any]:
        """Read until a frame matches ``pred``; returns it (fails on the deadline)."""
        async with asyncio.timeout(within):
            while True:
                msg = await self.recv(within)
                if pred(msg):
                    return msg

    async def collect(self, n: int, within: float = 5.0) -> list[dict[str, Any]]:
        async with asyncio.timeout(within):
            return [await self.recv(within) for _ in range(n)]

    def data(self) -> list[dict[str, Any]]:
        return [m for _, m in self.received if m.get("type") not in CONTROL_TYPES]


async def connect(sim: KalshiSimulator, key: rsa.RSAPrivateKey, **kw: Any) -> ClientConnection:
    # An unbounded queue keeps the client reading the socket even when a test stops calling recv(),
    # so the closing handshake at teardown is never stuck behind unread data.
    kw.setdefault("max_queue", None)
    return await websockets.connect(
        sim.ws_url, additional_headers=signed_headers(key), compression=None, ping_interval=None, **kw
    )


@pytest.fixture
async def client(sim: KalshiSimulator, private_key: rsa.RSAPrivateKey) -> AsyncIterator[Client]:
    ws = await connect(sim, private_key)
    try:
        yield Client(ws)
    finally:
        await ws.close()


def with_id(cmd_id: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m.get("id") == cmd_id


def seqs_by_sid(msgs: list[dict[str, Any]]) -> dict[int, list[int]]:
    out: dict[int, list[int]] = defaultdict(list)
    for m in msgs:
        if "seq" in m and m.get("type") not in CONTROL_TYPES:
            out[m["sid"]].append(m["seq"])
    return out


# --- auth (§A2) ------------------------------------------------------------------------------


@pytest.mark.parametrize("sim_key_fmt", ["spki", "pkcs1", "private"])
@pytest.mark.parametrize("client_key_fmt", ["pkcs8", "pkcs1"])
async def test_auth_accepts_pkcs1_and_pkcs8_keys(
    private_key: rsa.RSAPrivateKey, sim_key_fmt: str, client_key_fmt: str
) -> None:
    # The client signs with its key re-loaded from PEM in either private format; the simulator is
    # configured with the public half as SPKI or PKCS#1, or with the private PEM itself.
    fmt = (
        serialization.PrivateFormat.PKCS8
        if client_key_fmt == "pkcs8"
        else serialization.PrivateFormat.TraditionalOpenSSL
    )
    pem = private_key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption())
    assert (b"BEGIN RSA PRIVATE KEY" in pem) == (client_key_fmt == "pkcs1")
    loaded = serialization.load_pem_private_key(pem, password=None)
    assert isinstance(loaded, rsa.RSAPrivateKey)
    sim_pem = pem if sim_key_fmt == "private" else public_pem(private_key, sim_key_fmt)
    async with KalshiSimulator(public_key_pem=sim_pem, markets=3, rate=0.0) as s:
        async with websockets.connect(s.ws_url, additional_headers=signed_headers(loaded)) as ws:
            await ws.send('{"id":1,"cmd":"list_subscriptions"}')
            assert orjson.loads(await asyncio.wait_for(ws.recv(), 5)) == {"id": 1, "type": "ok", "msg": []}
        assert s.auth_failures == []


async def expect_401(sim: KalshiSimulator, headers: dict[str, str]) -> str:
    with pytest.raises(InvalidStatus) as info:
        await websockets.connect(sim.ws_url, additional_headers=headers, open_timeout=5)
    response = info.value.response
    assert response.status_code == 401
    body = response.body.decode()
    for secret in (headers.get("KALSHI-ACCESS-SIGNATURE"), KEY_ID):
        if secret:
            assert secret not in body  # never echo the signature or the key id
    assert sim.connection_count == 0
    return body


async def test_bad_signature_is_401(sim: KalshiSimulator) -> None:
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    body = await expect_401(sim, signed_headers(other))
    assert "bad signature" in body


async def test_signature_over_wrong_path_or_salt_is_401(
    sim: KalshiSimulator, private_key: rsa.RSAPrivateKey
) -> None:
    # §A2 common failures: query string in the signed path; and a salt other than the digest length.
    assert "bad signature" in await expect_401(sim, signed_headers(private_key, path=WS_PATH + "?x=1"))
    assert "bad signature" in await expect_401(sim, signed_headers(private_key, path="/trade-api/v2"))
    max_salt = padding.PSS.MAX_LENGTH
    assert "bad signature" in await expect_401(sim, signed_headers(private_key, salt=max_salt))  # type: ignore[arg-type]


async def test_stale_future_and_seconds_timestamps_are_401(
    sim: KalshiSimulator, private_key: rsa.RSAPrivateKey
) -> None:
    now_ms = int(time.time() * 1000)
    assert "skew" in await expect_401(sim, signed_headers(private_key, ts_ms=now_ms - 31_000))
    assert "skew" in await expect_401(sim, signed_headers(private_key, ts_ms=now_ms + 31_000))
    assert "seconds" in await expect_401(sim, signed_headers(private_key, ts_ms=now_ms // 1000))
    # Within the default 30 s skew is fine.
    async with websockets.connect(
        sim.ws_url, additional_headers=signed_headers(private_key, ts_ms=now_ms - 20_000)
    ):
        pass


async def test_missing_header_and_wrong_key_id_are_401(
    sim: KalshiSimulator, private_key: rsa.RSAPrivateKey
) -> None:
    for name in ("KALSHI-ACCESS-KEY", "KALSHI-ACCESS-TIMESTAMP", "KALSHI-ACCESS-SIGNATURE"):
        headers = signed_headers(private_key)
        del headers[name]
        assert f"missing header {name}" in await expect_401(sim, headers)
    assert "unknown API key id" in await expect_401(sim, signed_headers(private_key, key_id="someone-else"))


async def test_auth_required_needs_a_key() -> None:
    with pytest.raises(ValueError, match="public_key_pem"):
        KalshiSimulator()
    async with KalshiSimulator(auth_required=False, markets=2) as s:
        async with websockets.connect(s.ws_url):  # no headers at all
            await s.wait_for_connections(1, timeout=5)


# --- commands and replies (§A3, §A4) --------------------------------------------------------


async def test_subscribe_replies_once_per_channel_with_distinct_sids(
    sim: KalshiSimulator, client: Client
) -> None:
    tickers = [m.ticker for m in sim.trading_markets()[:2]]
    channels = ["ticker", "trade", "orderbook_delta", "market_lifecycle_v2"]
    await client.cmd(7, "subscribe", {"channels": channels, "market_tickers": tickers})
    # Nothing precedes the replies; the orderbook snapshots follow them, before any other data.
    replies = await client.collect(len(channels))
    assert [r["type"] for r in replies] == ["subscribed"] * 4
    assert [r["msg"]["channel"] for r in replies] == channels
    snapshots = await client.collect(len(tickers))
    assert [(m["type"], m["msg"]["market_ticker"]) for m in snapshots] == [
        ("orderbook_snapshot", t) for t in tickers
    ]
    assert all(r["id"] == 7 and set(r) == {"id", "type", "msg"} for r in replies)
    sids = [r["msg"]["sid"] for r in replies]
    assert len(set(sids)) == 4
    await sim.wait_for_subscriptions(4, timeout=5)
    assert sorted(sid for _, sid, _ in sim.subscriptions()) == sorted(sids)


async def test_seq_contiguous_per_sid_snapshot_first_and_bytes_match_record(
    sim: KalshiSimulator, client: Client
) -> None:
    tickers = [m.ticker for m in sim.trading_markets()[:3]]
    await client.cmd(
        1, "subscribe", {"channels": ["orderbook_delta", "trade", "ticker"], "market_tickers": tickers}
    )
    await client.cmd(2, "subscribe", {"channels": ["market_lifecycle_v2"]})
    await client.collect(600)
    data = client.data()
    by_sid = seqs_by_sid(data)
    assert len(by_sid) == 3  # orderbook, trade, lifecycle carry seq; ticker does not
    for sid, seqs in by_sid.items():
        assert seqs == list(range(1, len(seqs) + 1)), f"sid {sid} not contiguous from 1"
    assert all("seq" not in m for m in data if m["type"] == "ticker")
    # The first orderbook frame for each market is its snapshot, and every delta follows one.
    seen: set[str] = set()
    for m in data:
        if m["type"] in ("orderbook_snapshot", "orderbook_delta"):
            t = m["msg"]["market_ticker"]
            assert m["type"] == "orderbook_snapshot" or t in seen
            seen.add(t)
    assert seen == set(tickers)
    # What the client read is, byte for byte and in order, a prefix of what the simulator recorded.
    got = [raw for raw, m in client.received if m.get("type") not in CONTROL_TYPES]
    sent = [f.data for f in sim.sent_frames if f.conn_id == 1]
    assert got == sent[: len(got)]
    assert {f.channel for f in sim.sent_frames} == {
        "orderbook_delta",
        "trade",
        "ticker",
        "market_lifecycle_v2",
    }


@pytest.mark.parametrize("use_yes_price", [False, True])
async def test_orderbook_deltas_apply_cleanly_to_the_snapshot(
    sim: KalshiSimulator, client: Client, use_yes_price: bool
) -> None:
    ticker = sim.trading_markets()[0].ticker
    params = {"channels": ["orderbook_delta"], "market_ticker": ticker, "use_yes_price": use_yes_price}
    await client.cmd(1, "subscribe", params)
    await client.collect(300)
    book: dict[str, dict[str, float]] = {}
    for m in client.data():
        msg = m["msg"]
        if m["type"] == "orderbook_snapshot":
            book = {
                side: {p: float(q) for p, q in msg.get(f"{side}_dollars_fp", [])} for side in ("yes", "no")
            }
        else:
            level = book[msg["side"]]
            level[msg["price_dollars"]] = round(
                level.get(msg["price_dollars"], 0.0) + float(msg["delta_fp"]), 2
            )
            assert level[msg["price_dollars"]] >= 0
            if level[msg["price_dollars"]] == 0:
                del level[msg["price_dollars"]]
            if book["yes"] and book["no"]:  # YES ask = 1 - best NO bid stays above the best YES bid
                yes_ask = min(map(float, book["no"])) if use_yes_price else 1 - max(map(float, book["no"]))
                assert max(map(float, book["yes"])) < yes_ask


async def test_send_initial_snapshot_and_use_yes_price(sim: KalshiSimulator, client: Client) -> None:
    sim.pause()  # only what the subscribe itself sends
    tickers = [m.ticker for m in sim.trading_markets()[:3]]
    await client.cmd(
        1, "subscribe", {"channels": ["ticker"], "market_tickers": tickers, "send_initial_snapshot": True}
    )
    frames = await client.collect(4)
    assert frames[0]["type"] == "subscribed"
    assert [(f["type"], f["msg"]["market_ticker"]) for f in frames[1:]] == [("ticker", t) for t in tickers]
    m = sim.market(tickers[0])
    for cmd_id, use_yes_price in ((2, False), (4, True)):
        params = {"channels": ["orderbook_delta"], "market_ticker": m.ticker, "use_yes_price": use_yes_price}
        await client.cmd(cmd_id, "subscribe", params)
        sid = (await client.until(with_id(cmd_id)))["msg"]["sid"]
        snap = await client.recv()
        assert snap["type"] == "orderbook_snapshot" and snap["sid"] == sid
        no_prices = [p for p, _ in snap["msg"]["no_dollars_fp"]]
        # Default: NO bids in NO-leg prices; use_yes_price: the same levels as YES-leg prices (1 - p).
        leg = sorted(100 - p for p in m.book_no) if use_yes_price else sorted(m.book_no)
        assert no_prices == [f"0.{p:02d}00" for p in leg]
        await client.cmd(cmd_id + 1, "unsubscribe", {"sids": [sid]})
        await client.until(with_id(cmd_id + 1))
    assert min(map(float, no_prices)) > max(float(p) for p, _ in snap["msg"]["yes_dollars_fp"])


async def test_update_subscription_add_delete_get_snapshot(sim: KalshiSimulator, client: Client) -> None:
    m1, m2 = (m.ticker for m in sim.trading_markets()[:2])
    await client.cmd(1, "subscribe", {"channels": ["orderbook_delta"], "market_tickers": [m1]})
    sid = (await client.until(lambda m: m["type"] == "subscribed"))["msg"]["sid"]
    await client.cmd(
        2, "update_subscription", {"sids": [sid], "market_tickers": [m2], "action": "add_markets"}
    )
    ok = await client.until(lambda m: m["type"] == "ok")
    assert ok["id"] == 2 and ok["sid"] == sid and ok["msg"] == {"market_tickers": [m1, m2]}
    nxt = await client.recv()  # the added market's snapshot comes right after the reply
    assert (
        nxt["type"] == "orderbook_snapshot"
        and nxt["msg"]["market_ticker"] == m2
        and nxt["seq"] == ok["seq"] + 1
    )

    await client.cmd(
        3, "update_subscription", {"sid": sid, "market_tickers": [m1], "action": "delete_markets"}
    )
    ok = await client.until(lambda m: m["type"] == "ok")
    assert ok["msg"] == {"market_tickers": [m2]}
    after_delete = len(client.received)

    await client.cmd(
        4, "update_subscription", {"sids": [sid], "market_tickers": [m2], "action": "get_snapshot"}
    )
    ok = await client.until(lambda m: m["type"] == "ok" and m["id"] == 4)
    assert ok["msg"] == {"market_tickers": [m2]}  # get_snapshot leaves the subscription as it was
    snap = await client.recv()
    assert snap["type"] == "orderbook_snapshot" and snap["msg"]["market_ticker"] == m2
    await client.collect(50)
    assert all(m["msg"].get("market_ticker") != m1 for _, m in client.received[after_delete:] if "msg" in m)
    seqs = seqs_by_sid(client.data())[sid]
    assert seqs == list(range(1, len(seqs) + 1))  # replies never consume a seq


async def test_update_subscription_errors(sim: KalshiSimulator, client: Client) -> None:
    m1 = sim.trading_markets()[0].ticker
    await client.cmd(1, "subscribe", {"channels": ["orderbook_delta", "ticker"], "market_tickers": [m1]})
    await client.cmd(2, "subscribe", {"channels": ["trade"]})
    sids = [(await client.until(lambda m: m["type"] == "subscribed"))["msg"]["sid"] for _ in range(3)]
    ob, _, all_trades = sids
    cases: list[tuple[dict[str, Any], int]] = [
        ({"sids": [sids[0], sids[1]], "market_tickers": [m1], "action": "add_markets"}, 12),
        ({"market_tickers": [m1], "action": "add_markets"}, 12),
        ({"sids": [999], "market_tickers": [m1], "action": "add_markets"}, 7),
        ({"sid": ob, "market_tickers": [m1], "action": "replace_markets"}, 13),
        ({"sid": ob, "market_tickers": [m1]}, 15),
        ({"sid": ob, "action": "add_markets"}, 14),
        ({"sid": ob, "market_tickers": ["NOPE-1"], "action": "add_markets"}, 16),
        ({"sid": all_trades, "market_tickers": [m1], "action": "add_markets"}, 13),
    ]
    errors = []
    for i, (params, code) in enumerate(cases, start=10):
        await client.cmd(i, "update_subscription", params)
        err = await client.until(with_id(i))
        assert err["type"] == "error" and err["msg"]["code"] == code, (params, err)
        errors.append(err)
    assert errors[6]["msg"]["market_ticker"] == "NOPE-1"


async def test_unsubscribe_and_list_subscriptions(sim: KalshiSimulator, client: Client) -> None:
    await client.cmd(1, "subscribe", {"channels": ["ticker", "trade", "market_lifecycle_v2"]})
    subs = {}
    for _ in range(3):
        r = await client.until(lambda m: m["type"] == "subscribed")
        subs[r["msg"]["channel"]] = r["msg"]["sid"]
    await client.cmd(2, "list_subscriptions")
    listed = await client.until(lambda m: m.get("id") == 2)
    assert listed["type"] == "ok"
    assert sorted((e["channel"], e["sid"]) for e in listed["msg"]) == sorted(subs.items())

    await client.cmd(3, "unsubscribe", {"sids": [subs["trade"], subs["market_lifecycle_v2"], 999]})
    replies = [await client.until(lambda m: m.get("id") == 3) for _ in range(3)]
    assert [(r["type"], r["sid"]) for r in replies[:2]] == [
        ("unsubscribed", subs["trade"]),
        ("unsubscribed", subs["market_lifecycle_v2"]),
    ]
    assert all(isinstance(r["seq"], int) for r in replies[:2])
    assert replies[2]["type"] == "error" and replies[2]["msg"]["code"] == 7
    mark = len(client.received)
    await client.collect(100)
    assert {m["sid"] for _, m in client.received[mark:]} == {subs["ticker"]}
    await client.cmd(4, "list_subscriptions")
    assert (await client.until(lambda m: m.get("id") == 4))["msg"] == [
        {"channel": "ticker", "sid": subs["ticker"]}
    ]


async def test_command_error_codes(sim: KalshiSimulator, client: Client) -> None:
    m1 = sim.trading_markets()[0].ticker
    cases: list[tuple[str, dict[str, Any] | None, int]] = [
        ("fly", {}, 5),
        ("subscribe", None, 2),
        ("subscribe", {"channels": []}, 3),
        ("subscribe", {"channels": ["ticker", "nope"]}, 8),
        ("subscribe", {"channels": ["orderbook_delta"]}, 14),
        ("subscribe", {"channels": ["trade"], "market_tickers": [m1, "KXNOPE-1"]}, 16),
        ("unsubscribe", {"sids": []}, 4),
        ("unsubscribe", {"sids": [42]}, 7),
    ]
    for i, (cmd, params, code) in enumerate(cases, start=1):
        await client.cmd(i, cmd, params)
        err = await client.until(with_id(i))
        assert err["type"] == "error" and err["msg"]["code"] == code, (cmd, params, err)
        assert isinstance(err["msg"]["msg"], str) and err["msg"]["msg"]
    await client.cmd(20, "subscribe", {"channels": ["trade"], "market_tickers": [m1]})
    await client.until(lambda m: m.get("id") == 20 and m["type"] == "subscribed")
    await client.cmd(21, "subscribe", {"channels": ["trade"], "market_tickers": [m1]})
    dup = await client.until(lambda m: m.get("id") == 21)
    assert dup["msg"]["code"] == 6 and dup["msg"]["market_ticker"] == m1
    await client.ws.send('{"id": 22, "cmd": "subscribe", ')  # malformed JSON
    bad = await client.until(lambda m: m["type"] == "error" and m["msg"]["code"] == 1)
    assert "id" not in bad
    assert sim.commands[0][1] == {"id": 1, "cmd": "fly", "params": {}}


# --- lifecycle and market changes (§A5) ------------------------------------------------------


async def test_lifecycle_events_follow_market_changes(sim: KalshiSimulator, client: Client) -> None:
    sim.set_rate(0.0)
    sim.pause()  # only the changes below, nothing generated
    await client.cmd(1, "subscribe", {"channels": ["market_lifecycle_v2", "ticker"]})
    sids = {}
    for _ in range(2):
        r = await client.until(lambda m: m["type"] == "subscribed")
        sids[r["msg"]["channel"]] = r["msg"]["sid"]
    target = sim.trading_markets()[0]

    def lifecycle(msg: dict[str, Any]) -> bool:
        return msg["type"] in ("market_lifecycle_v2", "event_lifecycle")

    assert sim.set_market_status(target.ticker, "inactive") == ["deactivated"]
    m = await client.until(lifecycle)
    assert m["sid"] == sids["market_lifecycle_v2"] and m["seq"] == 1
    assert m["msg"] == {"market_ticker": target.ticker, "event_type": "deactivated", "is_deactivated": True}
    assert target.ticker not in {x.ticker for x in sim.trading_markets()}
    assert sim.set_market_status(target.ticker, "active") == ["activated"]
    assert (await client.until(lifecycle))["msg"]["event_type"] == "activated"
    assert sim.set_market_status(target.ticker, "finalized", result="no") == ["determined", "settled"]
    determined, settled = await client.until(lifecycle), await client.until(lifecycle)
    assert determined["msg"]["event_type"] == "determined" and determined["msg"]["result"] == "no"
    assert determined["msg"]["settlement_value"] == "0.0000"
    assert settled["msg"]["event_type"] == "settled" and isinstance(settled["msg"]["settled_ts"], int)

    new = await sim.add_market(
        series_ticker="KXHIGHNY", ticker="KXHIGHNY-SIMEV-B60.5", event_ticker="KXHIGHNY-SIMEV"
    )
    ev, created = await client.until(lifecycle), await client.until(lifecycle)
    assert ev["type"] == "event_lifecycle" and ev["msg"]["event_ticker"] == "KXHIGHNY-SIMEV"
    assert ev["msg"]["series_ticker"] == "KXHIGHNY"
    assert created["msg"]["event_type"] == "created" and created["msg"]["market_ticker"] == new.ticker
    assert created["msg"]["additional_metadata"]["event_ticker"] == "KXHIGHNY-SIMEV"
    assert [ev["seq"], created["seq"]] == [5, 6]
    # The new market trades at once on the all-markets ticker subscription; the finalized one never.
    sim.resume()
    sim.set_rate(5000.0)
    await client.until(lambda msg: msg["type"] == "ticker" and msg["msg"]["market_ticker"] == new.ticker)
    assert target.ticker not in {f.market_ticker for f in sim.sent_frames if f.type == "ticker"}
    async with aiohttp.ClientSession() as http:
        async with http.get(f"{sim.rest_url}/markets/{target.ticker}") as resp:
            body = await resp.json()
    assert body["market"]["status"] == "finalized" and body["market"]["result"] == "no"


async def test_no_market_list_sends_every_market_including_one_created_later(
    sim: KalshiSimulator, client: Client
) -> None:
    """§A3: ticker and trade with no market list carry every market, also one created after the subscribe."""
    await client.cmd(1, "subscribe", {"channels": ["ticker", "trade"]})
    for _ in range(2):
        await client.until(lambda m: m["type"] == "subscribed")
    every = {m.ticker for m in sim.trading_markets()}
    seen: dict[str, set[str]] = {"ticker": set(), "trade": set()}

    def covers(markets: set[str]) -> Callable[[dict[str, Any]], bool]:
        def done(msg: dict[str, Any]) -> bool:
            if msg["type"] in seen:
                seen[msg["type"]].add(msg["msg"]["market_ticker"])
            return all(markets <= found for found in seen.values())
        return done

    await client.until(covers(every), within=10)
    new = await sim.add_market(series_ticker="KXHIGHNY", ticker="KXHIGHNY-SIMEV-B61.5", event_ticker="KXHIGHNY-SIMEV")
    await client.until(covers(every | {new.ticker}), within=10)
    assert not any(c.get("cmd") != "subscribe" for _, c in sim.commands), "no command after the first subscribe"


async def test_legacy_era_payloads(private_key: rsa.RSAPrivateKey) -> None:
    async with KalshiSimulator(
        public_key_pem=public_pem(private_key), markets=5, rate=3000, era="legacy"
    ) as s:
        ws = await connect(s, private_key)
        c = Client(ws)
        await c.cmd(1, "subscribe", {"channels": ["trade", "ticker"]})
        trade = await c.until(lambda m: m["type"] == "trade")
        ticker = await c.until(lambda m: m["type"] == "ticker")
        await ws.close()
    assert isinstance(trade["msg"]["yes_price"], int) and isinstance(trade["msg"]["count"], int)
    assert trade["msg"]["yes_price"] + trade["msg"]["no_price"] == 100
    assert "ts_ms" not in trade["msg"] and isinstance(ticker["msg"]["price"], int)


# --- replay ----------------------------------------------------------------------------------


async def test_replay_sends_sample_lines_verbatim(samples_dir: Path, private_key: rsa.RSAPrivateKey) -> None:
    path = samples_dir / "kalshi_trade.jsonl"
    lines = [line for line in path.read_bytes().splitlines() if line.strip()]
    async with KalshiSimulator(public_key_pem=public_pem(private_key), replay=path, rate=0) as s:
        idle = Client(await connect(s, private_key))  # no subscription: gets nothing
        c = Client(await connect(s, private_key))
        await c.cmd(1, "subscribe", {"channels": ["trade"]})
        await c.until(lambda m: m["type"] == "subscribed")
        got = [await c.ws.recv(decode=False) for _ in lines]
        assert got == lines
        assert [f.data for f in s.sent_frames] == lines
        assert s.sent_frames[0].type == "trade" and s.sent_frames[0].seq == orjson.loads(lines[0])["seq"]
        with pytest.raises(TimeoutError):
            await idle.recv(within=0.2)
        await idle.ws.close()
        await c.ws.close()


# --- keep-alive and faults (§A6) -------------------------------------------------------------


async def test_server_pings_with_heartbeat_body_and_stall_silences_everything(
    private_key: rsa.RSAPrivateKey,
) -> None:
    async with KalshiSimulator(
        public_key_pem=public_pem(private_key), markets=5, rate=500, ping_interval=0.2
    ) as s:
        async with aiohttp.ClientSession() as http:
            async with http.ws_connect(s.ws_url, headers=signed_headers(private_key), autoping=False) as ws:
                msg = await ws.receive(timeout=2)
                assert msg.type is aiohttp.WSMsgType.PING and msg.data == b"heartbeat"
                await ws.send_str('{"id":1,"cmd":"subscribe","params":{"channels":["ticker"]}}')
                while (await ws.receive(timeout=2)).type is not aiohttp.WSMsgType.TEXT:
                    pass
                stall_start = time.time_ns()
                s.stall(1.5)
                # Frames already on the wire may still arrive; then nothing (no data, no ping).
                deadline = asyncio.get_running_loop().time() + 0.5
                while True:
                    try:
                        await ws.receive(timeout=0.15)
                    except TimeoutError:
                        break
                    assert asyncio.get_running_loop().time() < deadline, "frames kept coming during the stall"
                with pytest.raises(TimeoutError):
                    await ws.receive(timeout=0.3)
                # A command during the stall is answered only afterwards, and before any new data.
                await ws.send_str('{"id":2,"cmd":"list_subscriptions"}')
                with pytest.raises(TimeoutError):
                    await ws.receive(timeout=0.2)
                async with asyncio.timeout(3):
                    while (first := await ws.receive()).type is not aiohttp.WSMsgType.TEXT:
                        pass
                assert orjson.loads(first.data)["id"] == 2
                kinds: set[aiohttp.WSMsgType] = set()
                async with asyncio.timeout(3):
                    while {aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.PING} - kinds:
                        kinds.add((await ws.receive()).type)
        recorded = [f.sent_at_ns for f in s.sent_frames if stall_start + 50_000_000 < f.sent_at_ns]
        assert recorded and min(recorded) >= stall_start + 1_400_000_000


async def test_stop_answering_pings(sim: KalshiSimulator, private_key: rsa.RSAPrivateKey) -> None:
    ws = await connect(sim, private_key)
    await asyncio.wait_for(await ws.ping(b"one"), 2)
    sim.stop_answering_pings(True)
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(await ws.ping(b"two"), 0.4)
    sim.stop_answering_pings(False)
    await asyncio.wait_for(await ws.ping(b"three"), 2)
    await ws.close()


async def test_close_connections_with_code_and_abort(
    sim: KalshiSimulator, private_key: rsa.RSAPrivateKey
) -> None:
    a, b = await connect(sim, private_key), await connect(sim, private_key)
    await sim.wait_for_connections(2, timeout=5)
    await sim.close_connections(code=1011, conn_id=sim.connection_ids[0])
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(a.recv(), 5)
    assert info.value.rcvd is not None and info.value.rcvd.code == 1011
    await sim.wait_for(lambda: sim.connection_count == 1, timeout=5)
    await sim.close_connections(abort=True)
    with pytest.raises(ConnectionClosed) as info:
        await asyncio.wait_for(b.recv(), 5)
    assert info.value.rcvd is None  # dropped without a close frame (1006)
    await sim.wait_for(lambda: sim.connection_count == 0, timeout=5)


async def test_send_malformed_is_sent_verbatim_and_recorded(sim: KalshiSimulator, client: Client) -> None:
    await client.cmd(1, "list_subscriptions")
    await client.recv()
    await sim.send_malformed(b'{"type":"ticker","msg":{')
    assert await asyncio.wait_for(client.ws.recv(decode=False), 5) == b'{"type":"ticker","msg":{'
    frame = sim.sent_frames[-1]
    assert isinstance(frame, SentFrame)
    assert (frame.type, frame.channel, frame.data, frame.sid) == (
        "malformed",
        "malformed",
        b'{"type":"ticker","msg":{',
        None,
    )


async def test_skip_seq_leaves_exactly_one_gap_per_sid(sim: KalshiSimulator, client: Client) -> None:
    tickers = [m.ticker for m in sim.trading_markets()[:2]]
    await client.cmd(
        1, "subscribe", {"channels": ["trade", "orderbook_delta", "ticker"], "market_tickers": tickers}
    )
    await client.collect(60)
    sim.skip_seq(3)
    mark: dict[int, int] = {}  # last seq the simulator had sent on each seq-carrying sid
    for f in sim.sent_frames:
        if f.sid is not None and f.seq is not None:
            mark[f.sid] = f.seq
    assert len(mark) == 2  # ticker carries no seq, so skip_seq cannot affect it

    def past_the_gap(_: dict[str, Any]) -> bool:
        seen = seqs_by_sid(client.data())
        return all(any(q > last for q in seen.get(sid, [])) for sid, last in mark.items())

    await client.until(past_the_gap)
    for sid, seqs in seqs_by_sid(client.data()).items():
        steps = [b - a for a, b in itertools.pairwise(seqs)]
        assert steps.count(4) == 1 and set(steps) == {1, 4}, f"sid {sid}: {steps}"
        assert seqs[steps.index(4) + 1] == mark[sid] + 4


async def test_send_error_drops_subscriptions_until_resubscribe(sim: KalshiSimulator, client: Client) -> None:
    await client.cmd(1, "subscribe", {"channels": ["ticker", "trade"]})
    await client.collect(20)
    live = {sid for _, sid, _ in sim.subscriptions()}
    await sim.send_error(code=25)
    errors = [await client.until(lambda m: m["type"] == "error") for _ in live]
    assert {e["sid"] for e in errors} == live
    assert all(
        e["msg"] == {"code": 25, "msg": "Subscription buffer overflow"} and "id" not in e for e in errors
    )
    with pytest.raises(TimeoutError):  # nothing more arrives on the dropped sids
        await client.recv(within=0.3)
    await client.cmd(2, "list_subscriptions")
    assert (await client.recv())["msg"] == []
    await client.cmd(3, "subscribe", {"channels": ["trade"]})
    new_sid = (await client.until(lambda m: m["type"] == "subscribed"))["msg"]["sid"]
    assert new_sid not in live
    first = await client.until(lambda m: m["type"] == "trade")
    assert first["sid"] == new_sid and first["seq"] == 1


async def test_slow_reader_gets_error_25(private_key: rsa.RSAPrivateKey) -> None:
    async with KalshiSimulator(
        public_key_pem=public_pem(private_key), markets=10, rate=0, overflow_bytes=256 * 1024, record=False
    ) as s:
        ws = await connect(s, private_key, max_queue=1)  # stops reading the socket once a frame waits
        await ws.send('{"id":1,"cmd":"subscribe","params":{"channels":["ticker","trade"]}}')
        await s.wait_for(lambda: any(f.type == "error" for f in s.control_frames), timeout=10)
        assert [f.type for f in s.control_frames if f.type == "error"] == ["error", "error"]
        assert s.subscriptions() == []  # terminal: both sids dropped
        c = Client(ws)
        errs = [await c.until(lambda m: m["type"] == "error", within=10) for _ in range(2)]
        assert [e["msg"]["code"] for e in errs] == [25, 25]
        await ws.close()
