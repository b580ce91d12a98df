from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from ingest_daemons.config import Settings, load_exchanges, resolve_environment
from ingest_daemons.errors import ConfigError
from tests.fixtures.config import REPO_EXCHANGES, WriteEnv


def issues_of(root: Path) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_exchanges(root)
    return [str(i) for i in info.value.issues]


def test_repository_config_is_valid() -> None:
    config = load_exchanges(REPO_EXCHANGES)
    assert set(config.feeds) == {"kalshi", "polymarket", "kraken"}
    assert {"dev", "prod"} <= set(config.environments)


def test_unknown_key_names_file_line_and_allowed_keys(write_env: WriteEnv) -> None:
    root = write_env("broken", feeds={"kalshi": {"shard_sise": 10}})
    [issue] = issues_of(root)
    assert "environments/broken.yaml:" in issue
    assert "feeds.kalshi.shard_sise: unknown key" in issue
    assert "shard_size" in issue  # the allowed keys help with the typo


def test_wrong_type(write_env: WriteEnv) -> None:
    [issue] = issues_of(write_env("broken", feeds={"kalshi": {"shard_size": "lots"}}))
    assert "feeds.kalshi.shard_size" in issue and "integer" in issue and "'lots'" in issue


def test_both_category_filters(write_env: WriteEnv) -> None:
    both = {"categories": ["Crypto"], "excludeCategories": ["Sports"]}
    [issue] = issues_of(write_env("broken", feeds={"kalshi": both}))
    assert "feeds.kalshi" in issue and "both `categories` and `excludeCategories`" in issue


def test_unknown_feed(write_env: WriteEnv) -> None:
    [issue] = issues_of(write_env("broken", feeds={"binance": {}}))
    assert "environments/broken.yaml" in issue and "feeds.binance: unknown feed" in issue


def test_bad_duration_and_unknown_category(write_env: WriteEnv) -> None:
    root = write_env("broken", streams={"max_age": "7x"}, feeds={"kalshi": {"categories": ["Crytpo"]}})
    issues = issues_of(root)
    assert any("streams.max_age: bad duration '7x'" in i for i in issues)


def test_unknown_category_is_named(write_env: WriteEnv) -> None:
    [issue] = issues_of(write_env("broken", feeds={"kalshi": {"excludeCategories": ["Crytpo"]}}))
    assert "feeds.kalshi.excludeCategories.0: unknown category 'Crytpo'" in issue


def test_invalid_yaml_and_line_numbers(exchanges_dir: Path) -> None:
    (exchanges_dir / "environments" / "bad.yaml").write_text("name: bad\nfeeds: [unclosed\n")
    [issue] = issues_of(exchanges_dir)
    assert "bad.yaml:" in issue and "not valid YAML" in issue


def test_every_problem_is_reported_at_once(exchanges_dir: Path) -> None:
    feed = yaml.safe_load((exchanges_dir / "feeds" / "kalshi.yaml").read_text())
    feed["limits"]["connections"] = "many"
    feed["colour"] = "blue"
    (exchanges_dir / "feeds" / "kalshi.yaml").write_text(yaml.safe_dump(feed))
    issues = issues_of(exchanges_dir)
    assert any("feeds/kalshi.yaml" in i and "limits.connections" in i for i in issues)
    assert any("colour: unknown key" in i for i in issues)


def test_filters_are_case_insensitive(write_env: WriteEnv) -> None:
    root = write_env("t", feeds={"kalshi": {"excludeCategories": ["sports", "MENTIONS"]}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=root), env_name="t")
    feed = env.feeds["kalshi"]
    assert not feed.settings.category_passes("Sports")
    assert feed.settings.category_passes("Economics")
    assert "Sports" not in feed.stream_categories() and "Economics" in feed.stream_categories()


def test_environment_variables_override_yaml(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("NATS_URL", "nats://10.1.2.3:4333")
    monkeypatch.setenv("SSMD_ENV", "prod")
    monkeypatch.setenv("SSMD_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("SSMD_EXCHANGES_DIR", str(REPO_EXCHANGES))
    env = resolve_environment()
    assert env.name == "prod" and env.nats_url == "nats://10.1.2.3:4333"
    assert env.data_dir == (tmp_path / "data").resolve()
    assert env.archive_root == Path("/data/archive")


def test_nats_section_gives_the_clients_settings(write_env: WriteEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    for var in ("NATS_URL", "NATS_USER", "NATS_PASSWORD", "NATS_CA", "NATS_CREDS"):
        monkeypatch.delenv(var, raising=False)
    root = write_env("t", nats_url="nats://n1:4222,nats://n2:4222",
                     nats={"creds": "/etc/nats/archiver.creds",
                           "tls": {"ca": "/etc/nats/ca.pem", "serverName": "nats"}})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=root), env_name="t")
    assert [s.host for s in env.nats.servers] == ["n1", "n2"] and env.nats.auth_method == "creds"
    assert env.nats.tls.ca_file == Path("/etc/nats/ca.pem") and env.nats.tls.server_name == "nats"
    flag = env.nats_settings("nats://flag:4333")
    assert flag.url == "nats://flag:4333" and flag.creds_file == Path("/etc/nats/archiver.creds")
    monkeypatch.setenv("NATS_CA", "/run/ca.pem")
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=root), env_name="t")
    assert env.nats.tls.ca_file == Path("/run/ca.pem")
    write_env("t", nats={"password": "in-yaml"})  # secrets never live in the YAML
    with pytest.raises(ConfigError, match="password"):
        resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=root), env_name="t")


def test_cli_validate(write_env: WriteEnv, capsys: pytest.CaptureFixture[str]) -> None:
    from ingest_daemons.cli import main

    assert main(["config", "validate", "--exchanges", str(REPO_EXCHANGES)]) == 0
    assert capsys.readouterr().out.startswith("OK")
    root = write_env("broken", feeds={"kalshi": {"shard_size": "x"}, "nope": {}})
    assert main(["config", "validate", "--exchanges", str(root)]) == 1
    out = capsys.readouterr().out
    assert "INVALID: 2 problem(s)" in out and "feeds.nope: unknown feed" in out


def test_category_tags_must_name_known_categories(exchanges_dir: Path) -> None:
    path = exchanges_dir / "feeds" / "polymarket.yaml"
    feed = yaml.safe_load(path.read_text())
    feed["category_tags"]["nba"] = "Sprots"
    path.write_text(yaml.safe_dump(feed))
    issues = issues_of(exchanges_dir)
    assert any("feeds/polymarket.yaml" in i and "Sprots" in i and "not in categories" in i for i in issues)


def test_category_tags_map_first_tag_in_event_order() -> None:
    feed = load_exchanges(REPO_EXCHANGES).feeds["polymarket"]
    assert feed.category_for_tags(["Tennis", "Politics"]) == "Sports"  # labels match case-insensitively
    assert feed.category_for_tags(["unknown-tag", "bitcoin"]) == "Crypto"
    assert feed.category_for_tags(["unknown-tag"]) is None
    assert set(feed.category_tags.values()) <= set(feed.categories)


def test_archive_start_date_is_a_date_or_first_run(write_env: WriteEnv) -> None:
    assert not issues_of_ok(write_env("fine", archive={"start_date": "2026-02-28"}))
    for bad in ("2026-02-30", "yesterday", "2026-2-1"):
        [issue] = issues_of(write_env("broken", archive={"start_date": bad}))
        assert "environments/broken.yaml:" in issue and "archive.start_date" in issue and "first_run" in issue


def test_first_run_start_date_is_recorded_once_under_the_data_dir(
    write_env: WriteEnv, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from datetime import UTC, datetime

    monkeypatch.delenv("SSMD_ARCHIVE_START", raising=False)
    root = write_env("local", archive={"start_date": "first_run"})
    env = resolve_environment(Settings.from_env(exchanges_dir=root, data_dir=tmp_path), env_name="local")
    assert env.archive_start_date(datetime(2026, 5, 1, 23, tzinfo=UTC)) == "2026-05-01"
    assert env.archive_start_date(datetime(2026, 5, 9, tzinfo=UTC)) == "2026-05-01"  # what was recorded
    assert (tmp_path / "first_run" / "local").read_text() == "2026-05-01\n"
    monkeypatch.setenv("SSMD_ARCHIVE_START", "2026-04-01")
    assert env.archive_start_date() == "2026-04-01"


def test_freshness_thresholds_and_quiet_hours_are_validated(write_env: WriteEnv) -> None:
    good = {"max_silence": "2m", "quiet_hours": [{"start": "22:00", "end": "06:00", "days": ["sat", "sun"]}],
            "streams": {"economics": "10m", "lifecycle": "1h"}}
    env = load_exchanges(write_env("fine", feeds={"kalshi": {"freshness": good}})).environment("fine")
    freshness = env.feeds["kalshi"].freshness
    assert freshness.threshold_for("crypto") is not None and freshness.threshold_for("crypto").total_seconds() == 120
    assert freshness.threshold_for("uncategorized") is None  # not judged unless listed
    assert freshness.threshold_for("lifecycle") is not None
    [issue] = issues_of(write_env("broken", feeds={"kalshi": {"freshness": {"max_silence": "0s"}}}))
    assert "feeds.kalshi.freshness" in issue and "max_silence must be longer than 0s" in issue
    quiet = [{"start": "25:00", "end": "06:00"}, {"start": "01:00", "end": "01:00"},
             {"start": "01:00", "end": "02:00", "days": ["someday"]}]
    issues = issues_of(write_env("broken", feeds={"kalshi": {"freshness": {"quiet_hours": quiet}}}))
    text = "\n".join(issues)
    assert "feeds.kalshi.freshness.quiet_hours.0" in text and "bad time '25:00'" in text
    assert "quiet_hours.1" in text and "are empty" in text and "someday" in text


def issues_of_ok(root: Path) -> list[str]:
    load_exchanges(root)
    return []


def test_validate_reports_every_kind_of_typo_in_every_file_in_one_run(
    exchanges_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Typos of different kinds side by side: none of them may hide another, and names are listed."""
    from ingest_daemons.cli import main

    (exchanges_dir / "environments" / "typos.yaml").write_text(
        "name: typos\n"
        "endpoint_set: demo\n"
        "streams:\n"
        "  max_age: 7dd\n"                        # a bad duration
        "  storage: fle\n"                        # a value outside its choices
        "feeds:\n"
        "  kalshi:\n"
        "    categories: [Econmics, Crypto]\n"    # an unknown category
        "    channels: [ticker, trades]\n"        # an unknown channel
        "    shard_sise: 10\n"                    # an unknown key
    )
    kraken = exchanges_dir / "feeds" / "kraken.yaml"
    kraken.write_text(kraken.read_text() + "colour: blue\n")  # and a problem in another file
    assert main(["config", "validate", "--exchanges", str(exchanges_dir)]) == 1
    out = capsys.readouterr().out
    lines = [line.strip() for line in out.splitlines()[1:]]
    assert out.startswith("INVALID: 6 problem(s)"), out
    expected = {
        "typos.yaml:4: streams.max_age: bad duration '7dd'",
        "typos.yaml:5: streams.storage: ",
        "typos.yaml:8: feeds.kalshi.categories.0: unknown category 'Econmics' for feed 'kalshi' (known: "
        "Climate and Weather, Companies, Crypto, Economics,",
        "typos.yaml:9: feeds.kalshi.channels.1: unknown channel 'trades' (known: ticker, trade, orderbook_delta, "
        "market_lifecycle_v2; did you mean 'trade'?)",
        "typos.yaml:10: feeds.kalshi.shard_sise: unknown key (allowed: ",
        "kraken.yaml:",
    }
    for fragment in expected:
        assert any(fragment in line for line in lines), (fragment, out)
    assert "did you mean 'Economics'?" in out and "'file' or 'memory'" in out
    assert "unknown feed" not in out


def test_channel_scope_splits_all_market_and_shard_channels(write_env: WriteEnv) -> None:
    root = write_env("scoped", feeds={"kalshi": {}})
    feed = resolve_environment(Settings.from_env(exchanges_dir=root), "scoped").feeds["kalshi"]
    assert feed.all_market_channels == ["ticker", "trade"]
    assert feed.shard_channels == ["orderbook_delta"]


def test_environment_overrides_channel_scope(write_env: WriteEnv) -> None:
    root = write_env("scoped", feeds={"kalshi": {"channel_scope": {"trade": "shard"}}})
    feed = resolve_environment(Settings.from_env(exchanges_dir=root), "scoped").feeds["kalshi"]
    assert feed.all_market_channels == ["ticker"]
    assert feed.shard_channels == ["trade", "orderbook_delta"]


def test_channel_scope_is_validated(write_env: WriteEnv, exchanges_dir: Path) -> None:
    [issue] = issues_of(write_env("broken", feeds={"kalshi": {"channel_scope": {"tikcer": "all"}}}))
    assert "feeds.kalshi.channel_scope.tikcer: unknown channel 'tikcer'" in issue
    [issue] = issues_of(write_env("broken", feeds={"kalshi": {"channel_scope": {"trade": "everywhere"}}}))
    assert "feeds.kalshi.channel_scope.trade" in issue and "'everywhere'" in issue
    path = exchanges_dir / "feeds" / "kalshi.yaml"
    feed = yaml.safe_load(path.read_text())
    feed["channels"]["scope"]["fills"] = "all"
    path.write_text(yaml.safe_dump(feed))
    issues = issues_of(exchanges_dir)
    assert any("feeds/kalshi.yaml" in i and "fills" in i and "not in available" in i for i in issues)
