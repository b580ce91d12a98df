"""ssmd data plane: exchange connectors, simulators, config, naming and NATS helpers.

Nothing in this package imports Dagster; the control plane (`ssmd_dagster`) imports this one.
"""

__version__ = "0.1.0"
