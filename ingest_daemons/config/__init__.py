"""Exchange configuration: typed models for `exchanges/feeds/*.yaml` and `exchanges/environments/*.yaml`.

Both planes load config through :func:`load_exchanges` and resolve one environment with
:func:`resolve_environment`, so the connector, the CLI and Dagster always agree on what a stream is.
"""

from ingest_daemons.config.loader import ExchangeConfig, load_exchanges
from ingest_daemons.config.models import (
    EnvironmentConfig,
    EnvironmentFeedConfig,
    FeedConfig,
    MessageTypeConfig,
    StreamLimits,
)
from ingest_daemons.config.settings import ResolvedEnvironment, Settings, resolve_environment

__all__ = [
    "EnvironmentConfig",
    "EnvironmentFeedConfig",
    "ExchangeConfig",
    "FeedConfig",
    "MessageTypeConfig",
    "ResolvedEnvironment",
    "Settings",
    "StreamLimits",
    "load_exchanges",
    "resolve_environment",
]
