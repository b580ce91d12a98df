"""A secret logged through ``context.log`` never reaches a run's stored event log."""

# No `from __future__ import annotations`: Dagster reads the context annotation at definition time.

import logging
import secrets

from dagster import AssetExecutionContext, DagsterInstance, asset, materialize

import ssmd_dagster  # noqa: F401 - importing the code location installs the redaction
from ingest_daemons.logs import REDACTED, register_secret


def test_context_log_secret_is_redacted_in_the_run_event_log() -> None:
    secret = "db-pass-" + secrets.token_hex(8)
    register_secret(secret)

    @asset
    def leaky(context: AssetExecutionContext) -> None:
        context.log.info(f"connecting to postgresql://ssmd_sync:{secret}@db:5432/ssmd")
        context.log.warning("retrying with password %s", secret)  # %-style arguments too
        logging.getLogger("dagster").error(f"dagster logger saw {secret}")

    with DagsterInstance.ephemeral() as instance:
        result = materialize([leaky], instance=instance)
        assert result.success
        messages = [entry.user_message for entry in instance.all_logs(result.run_id)]
    leaked = [m for m in messages if secret in m]
    assert leaked == []
    assert any(f"postgresql://ssmd_sync:{REDACTED}@db:5432/ssmd" in m for m in messages), messages
    assert any(f"retrying with password {REDACTED}" in m for m in messages), messages
