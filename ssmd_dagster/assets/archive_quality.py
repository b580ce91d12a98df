"""Per-day quality of an archive partition as numeric materialisation metadata.

Dagster plots every numeric metadata entry of a partitioned asset across its partitions (the
asset's *Plots* tab), so each number here becomes a line over days: a rise in holes, reconnects or
exchange lag on one day stands out without opening a file. Everything comes from the manifest
(``ingest_daemons.archive.manifest``), so the same figures can be recomputed from the archive alone.
Missing figures (no message with an exchange timestamp that day) are null, not zero, so a plot
shows a gap rather than a false "no lag".
"""

from __future__ import annotations

from typing import Any

from dagster import MetadataValue

from ingest_daemons import wire
from ingest_daemons.archive.log_histogram import HistogramSummary
from ingest_daemons.archive.manifest import PartitionManifest

STATUS_CONNECTED = f"{wire.TYPE_STATUS}.{wire.STATUS_CONNECTED}"


def _number(value: float | int | None) -> Any:
    return MetadataValue.null() if value is None else value


def _lag_entries(prefix: str, summary: HistogramSummary, suffix: str = "") -> dict[str, Any]:
    return {
        f"{prefix}_p50{suffix}": _number(summary.p50),
        f"{prefix}_p99{suffix}": _number(summary.p99),
        f"{prefix}_max{suffix}": _number(summary.max),
    }


def clock_table(manifest: PartitionManifest) -> str:
    """The clock profile per message type as a markdown table (for a person; the numbers plot)."""
    clock = manifest.clock
    if clock is None:
        return "no clock profile (archived before profiles were recorded)"
    rows = ["| type | with exchange ts | field | p50 ms | p99 ms | max ms | without exchange ts |",
            "|---|---:|---|---:|---:|---:|---:|"]
    types = sorted(set(clock.exchange_to_receive_ms_by_type) | set(clock.without_exchange_ts))
    for name in types:
        lag = clock.exchange_to_receive_ms_by_type.get(name)
        fields = ", ".join(clock.exchange_ts_fields.get(name, {})) or "-"
        if lag is None:
            rows.append(f"| {name} | 0 | - | - | - | - | {clock.without_exchange_ts.get(name, 0)} |")
        else:
            rows.append(f"| {name} | {lag.count} | {fields} | {lag.p50} | {lag.p99} | {lag.max} | "
                        f"{clock.without_exchange_ts.get(name, 0)} |")
    store = clock.receive_to_store_us
    rows.append("")
    rows.append(f"Receive → stored (per socket read): p50 {store.p50} µs, p99 {store.p99} µs, max {store.max} µs "
                f"over {store.count} reads; {clock.without_receive_ts} messages without a receive time.")
    return "\n".join(rows)


def quality_metadata(manifest: PartitionManifest) -> dict[str, Any]:
    """Numbers a person watches day by day; each one plots across partitions in the UI."""
    m = manifest
    entries: dict[str, Any] = {
        "status_markers": m.markers.get(wire.TYPE_STATUS, 0),
        "reconnects": m.markers.get(STATUS_CONNECTED, 0),
        "unparsed_frames": m.message_types.get(wire.TYPE_UNPARSED, 0),
        # Written by archives that drop repeated Nats-Msg-Ids; absent from older manifests.
        "duplicates_dropped": int(getattr(m, "duplicates_dropped", 0) or 0),
    }
    clock = m.clock
    if clock is None:
        return entries
    entries.update(_lag_entries("exchange_lag", clock.exchange_to_receive_ms, "_ms"))
    entries.update(_lag_entries("receive_to_store", clock.receive_to_store_us, "_us"))
    entries["with_exchange_ts"] = clock.exchange_to_receive_ms.count
    entries["without_exchange_ts"] = sum(clock.without_exchange_ts.values())
    entries["without_receive_ts"] = clock.without_receive_ts
    for name, summary in clock.exchange_to_receive_ms_by_type.items():
        entries.update(_lag_entries("exchange_lag", summary, f"_ms.{name}"))
    entries["clock_profile"] = MetadataValue.md(clock_table(m))
    return entries
