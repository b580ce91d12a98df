"""ssmd control plane: Dagster assets, checks, sensors and schedules.

Imports `ingest_daemons` for config, naming and NATS helpers; never the other way round.
"""

from ingest_daemons.logs import install_redacting_log_records

# Run logs (context.log, captured Python logs) are stored by Dagster's own handlers: redact secrets
# when each record is made, in every process that loads this package (code server, run workers).
install_redacting_log_records()
