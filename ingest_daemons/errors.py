"""Error classes for the data plane. Callers branch on the class, never on message text."""

from __future__ import annotations

from dataclasses import dataclass, field


class SsmdError(Exception):
    """Base class for every error ssmd raises on purpose."""


@dataclass(frozen=True)
class ConfigIssue:
    """One problem in one config file: where (file, key path, line) and why."""

    file: str
    key_path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        key = self.key_path or "(top level)"
        return f"{where}: {key}: {self.reason}"


@dataclass
class ConfigError(SsmdError):
    """Invalid exchange configuration; carries every issue found, not just the first."""

    issues: list[ConfigIssue] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues) or "invalid configuration"


class StreamReconcileError(SsmdError):
    """A stream change JetStream cannot apply in place (e.g. storage type)."""


class AuthError(SsmdError):
    """The exchange refused our credentials, or the credentials could not be loaded."""


class PublishTimeout(SsmdError):
    """A JetStream publish was not acknowledged within its deadline."""


class NatsServerError(SsmdError):
    """The local nats-server could not be started or did not become ready."""
