"""The code location loads, and the asset keys produced from the repository's exchanges/ config
are exactly these (an accidental key change shows up here, in review)."""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml
from dagster import AssetKey, Definitions
from dagster._config import process_config
from dagster._core.instance.config import dagster_instance_config

from ingest_daemons.config import Settings, resolve_environment
from ssmd_dagster.definitions import build_definitions

REPO = Path(__file__).resolve().parents[2]

DEV_CATEGORIES = ("climate_and_weather", "crypto", "economics", "financials", "lifecycle", "politics", "uncategorized")
DEV_POLYMARKET = ("crypto", "economics", "lifecycle", "politics", "uncategorized")
DEV_KRAKEN = ("futures", "spot", "uncategorized")
DEV_KEYS = [
    "archive/dev/kalshi/climate_and_weather",
    "archive/dev/kalshi/crypto",
    "archive/dev/kalshi/economics",
    "archive/dev/kalshi/financials",
    "archive/dev/kalshi/lifecycle",
    "archive/dev/kalshi/politics",
    "archive/dev/kalshi/uncategorized",
    *(f"archive/dev/kraken/{c}" for c in DEV_KRAKEN),
    *(f"archive/dev/polymarket/{c}" for c in DEV_POLYMARKET),
    *(f"gcs/dev/kalshi/{c}" for c in DEV_CATEGORIES),
    *(f"gcs/dev/kraken/{c}" for c in DEV_KRAKEN),
    *(f"gcs/dev/polymarket/{c}" for c in DEV_POLYMARKET),
    "jetstream_streams",
    *(f"parquet/dev/kalshi/{c}" for c in DEV_CATEGORIES),
    *(f"parquet/dev/kraken/{c}" for c in DEV_KRAKEN),
    *(f"parquet/dev/polymarket/{c}" for c in DEV_POLYMARKET),
    "secmaster/dev/kalshi",
    "secmaster/dev/kraken",
    "shards/dev/kalshi",
    "shards/dev/polymarket",
]
PROD_KALSHI = (
    "climate_and_weather", "companies", "crypto", "economics", "elections", "entertainment", "financials",
    "health", "lifecycle", "politics", "science_and_technology", "sports", "transportation", "uncategorized",
    "world",
)
PROD_OTHER = ("kraken/futures", "kraken/spot", "kraken/uncategorized", "polymarket/crypto", "polymarket/economics",
              "polymarket/lifecycle", "polymarket/politics", "polymarket/uncategorized")
PROD_KEYS = [
    *(f"archive/prod/kalshi/{c}" for c in PROD_KALSHI),
    *(f"archive/prod/{s}" for s in PROD_OTHER),
    *(f"gcs/prod/kalshi/{c}" for c in PROD_KALSHI),
    *(f"gcs/prod/{s}" for s in PROD_OTHER),
    "jetstream_streams",
    *(f"parquet/prod/kalshi/{c}" for c in PROD_KALSHI),
    *(f"parquet/prod/{s}" for s in PROD_OTHER),  # every feed's streams have typed tables
    "secmaster/prod/kalshi",
    "secmaster/prod/kraken",
    "shards/prod/kalshi",
    "shards/prod/polymarket",
]


def repo_definitions(env_name: str, tmp_path: Path) -> Definitions:
    settings = Settings.from_env(exchanges_dir=REPO / "exchanges", data_dir=tmp_path)
    return build_definitions(resolve_environment(settings, env_name=env_name))


@pytest.mark.parametrize(("env_name", "expected"), [("dev", DEV_KEYS), ("prod", PROD_KEYS)])
def test_asset_keys_snapshot(env_name: str, expected: list[str], tmp_path: Path) -> None:
    defs = repo_definitions(env_name, tmp_path)
    keys = sorted(k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys())
    assert keys == expected


def test_groups_jobs_sensors_and_checks(tmp_path: Path) -> None:
    defs = repo_definitions("prod", tmp_path)
    graph = defs.resolve_asset_graph()
    assert graph.get(AssetKey(["archive", "prod", "kraken", "spot"])).group_name == "kraken"
    assert graph.get(AssetKey("jetstream_streams")).group_name == "streams"
    economics = AssetKey(["archive", "prod", "kalshi", "economics"])
    assert {k.name for k in graph.get_check_keys_for_assets({economics})} == {
        "contiguity", "manifest_matches_file", "gzip_integrity", "freshness"
    }
    assert "PROD_KALSHI_ECONOMICS" in (graph.get(economics).description or "")
    jobs = {j.name for j in defs.resolve_all_job_defs()}
    assert {"provision_streams", "archive_prod_kalshi", "archive_prod_kraken", "archive_prod_polymarket",
            "archive_reverify", "shard_headroom", "archive_pipeline_prod_kalshi"} <= jobs
    assert {s.name for s in defs.sensors or []} == {  # type: ignore[union-attr]
        "exchange_config_changed", "archive_day_close", "archive_retention_risk", "shard_headroom",
        "archive_copies_automation", "archive_partition_failure_alert", "stream_freshness",
    }
    assert defs.resolve_schedule_def("archive_reverify_nightly").cron_schedule == "30 3 * * *"
    assert defs.resolve_schedule_def("secmaster_sync_hourly").cron_schedule.endswith("* * * *")


def archive_partition_keys(defs: Definitions) -> list[str]:
    partitions = defs.resolve_asset_graph().get(AssetKey(["archive", "dev", "kalshi", "economics"])).partitions_def
    assert partitions is not None
    return list(partitions.get_partition_keys())


def test_a_fresh_local_stack_has_partitions_from_the_day_it_first_ran(tmp_path: Path) -> None:
    """dev.yaml says `start_date: first_run`: a new data dir shows today's partition only, not a year."""
    today = datetime.now(UTC).strftime("%Y-%m-%d")
    assert archive_partition_keys(repo_definitions("dev", tmp_path)) == [today]
    assert (tmp_path / "first_run" / "dev").read_text().strip() == today
    (tmp_path / "first_run" / "dev").write_text("2026-11-30\n")  # as if first run on that day
    keys = archive_partition_keys(repo_definitions("dev", tmp_path))
    assert keys[0] == "2026-11-30" and keys[-1] == today


def test_prod_partitions_start_at_the_configured_date(tmp_path: Path) -> None:
    partitions = repo_definitions("prod", tmp_path).resolve_asset_graph().get(
        AssetKey(["archive", "prod", "kalshi", "economics"])).partitions_def
    assert partitions is not None and partitions.get_first_partition_key() == "2026-01-01"
    assert not (tmp_path / "first_run").exists()


def test_workspace_loads_with_the_local_instance_config(tmp_path: Path) -> None:
    home = tmp_path / "dagster"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SSMD_", "NATS_URL"))}
    env.update(DAGSTER_HOME=str(home), SSMD_DATA_DIR=str(tmp_path / "var"))
    dagster = Path(sys.executable).parent / "dagster"
    proc = subprocess.run([str(dagster), "definitions", "validate", "-w", "workspace.yaml"], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "All code locations passed validation" in proc.stdout + proc.stderr
    assert (home / "history").is_dir()  # SQLite storage went under $DAGSTER_HOME


def _validate_class(section: dict[str, object]) -> None:
    klass = getattr(importlib.import_module(str(section["module"])), str(section["class"]))
    result = process_config(klass.config_type(), section.get("config") or {})
    assert result.success, result.errors


@pytest.mark.parametrize("path", ["dagster.yaml", "deploy/dagster/dagster-k8s.yaml"])
def test_instance_configs_validate(path: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DAGSTER_PG_HOST", "DAGSTER_PG_USER", "DAGSTER_PG_PASSWORD", "DAGSTER_PG_DB",
                 "DAGSTER_K8S_NAMESPACE", "DAGSTER_JOB_IMAGE", "DAGSTER_COMPUTE_LOG_BUCKET"):
        monkeypatch.setenv(name, "x")
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    shutil.copy(REPO / path, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    for key in ("run_coordinator", "run_launcher", "compute_logs", "local_artifact_storage"):
        if key in config:
            _validate_class(config[key])
    raw = yaml.safe_load((REPO / path).read_text())
    if "storage" not in raw:  # the chart's layout: one PostgreSQL section per storage
        for key in ("run_storage", "event_log_storage", "schedule_storage"):
            assert raw[key]["module"].startswith("dagster_postgres"), key
            assert raw[key]["config"]["postgres_db"]["scheme"] == "postgresql+psycopg2", key
            _validate_class(raw[key])
    elif "postgres" in raw["storage"]:
        from dagster_postgres import DagsterPostgresStorage

        assert raw["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
        assert process_config(DagsterPostgresStorage.config_type(), raw["storage"]["postgres"]).success
    else:
        assert raw["storage"]["sqlite"]["base_dir"] == {"env": "DAGSTER_HOME"}
