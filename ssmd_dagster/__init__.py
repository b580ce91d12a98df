"""ssmd control plane: Dagster assets, checks, sensors and schedules.

Imports `ingest_daemons` for config, naming and NATS helpers; never the other way round.
"""
