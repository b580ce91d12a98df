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
