"""Load and validate every file under an exchanges folder, collecting all problems at once.

A problem is reported as ``file:line: key.path: reason``. Line numbers come from the YAML node
tree, so an operator can jump straight to the offending key.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from ingest_daemons.config.models import BOTH_FILTERS, EnvironmentConfig, FeedConfig
from ingest_daemons.errors import ConfigError, ConfigIssue

_M = TypeVar("_M", bound=BaseModel)


@dataclass(frozen=True)
class ExchangeConfig:
    """All feeds and environments of one exchanges folder, validated together."""

    root: Path
    feeds: dict[str, FeedConfig] = field(default_factory=dict)
    environments: dict[str, EnvironmentConfig] = field(default_factory=dict)

    def environment(self, name: str) -> EnvironmentConfig:
        try:
            return self.environments[name]
        except KeyError:
            known = ", ".join(sorted(self.environments)) or "none"
            raise ConfigError(
                [ConfigIssue(str(self.root / "environments"), "", f"unknown environment {name!r} (known: {known})")]
            ) from None


def _display(path: Path) -> str:
    try:
        rel = os.path.relpath(path)
    except ValueError:
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _node_line(node: yaml.Node | None, loc: Sequence[str | int]) -> int | None:
    """Line (1-based) of the deepest node reachable along ``loc``; the key's own line for a mapping key."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key_node, value_node in node.value:
                if key_node.value == str(part):
                    line = key_node.start_mark.line + 1
                    node = value_node
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _allowed_keys(model: type[BaseModel], loc: Sequence[str | int]) -> list[str] | None:
    """Field names (aliases where set) allowed at ``loc[:-1]``, to help with a typo."""
    current: Any = model
    for part in loc[:-1]:
        if isinstance(part, int) or current is None:
            continue
        fields = getattr(current, "model_fields", None)
        if fields is None:
            return None
        by_alias = {(f.alias or n): f for n, f in fields.items()}
        info = by_alias.get(str(part))
        if info is None:
            # inside a dict[str, Model]: the key is a user name, keep the same model
            continue
        current = _model_of(info.annotation)
    fields = getattr(current, "model_fields", None)
    if fields is None:
        return None
    return sorted((f.alias or n) for n, f in fields.items())


def _model_of(annotation: Any) -> Any:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in getattr(annotation, "__args__", ()) or ():
        found = _model_of(arg)
        if found is not None:
            return found
    return None


def _issues_from_validation(
    path: Path, node: yaml.Node | None, model: type[BaseModel], exc: ValidationError
) -> list[ConfigIssue]:
    issues = []
    for err in exc.errors(include_url=False):
        loc = [p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-"))]
        if err["type"] == "extra_forbidden":
            allowed = _allowed_keys(model, loc)
            reason = "unknown key" + (f" (allowed: {', '.join(allowed)})" if allowed else "")
        elif err["type"] == "missing":
            reason = "required key is missing"
        else:
            reason = str(err["msg"]).removeprefix("Value error, ")
            if err["type"].endswith("_type") or err["type"] in {"literal_error", "string_pattern_mismatch"}:
                reason += f" (got {err.get('input')!r})"
        key_path = ".".join(str(p) for p in loc)
        issues.append(ConfigIssue(_display(path), key_path, reason, _node_line(node, loc)))
    return issues


def _read_yaml(path: Path, issues: list[ConfigIssue]) -> tuple[Any, yaml.Node | None]:
    try:
        text = path.read_text(encoding="utf-8")
        node = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark is not None else None
        issues.append(ConfigIssue(_display(path), "", f"not valid YAML: {getattr(exc, 'problem', exc)}", line))
        return None, None
    except OSError as exc:
        issues.append(ConfigIssue(_display(path), "", f"cannot read: {exc.strerror}"))
        return None, None
    if not isinstance(data, dict):
        issues.append(ConfigIssue(_display(path), "", "expected a mapping at the top level", 1))
        return None, None
    return data, node


def _validate_file(
    path: Path,
    model: type[_M],
    issues: list[ConfigIssue],
    raw_checks: Callable[[Path, yaml.Node | None, dict[str, Any]], list[ConfigIssue]] | None = None,
) -> tuple[_M | None, Any]:
    """Parse one file; ``raw_checks`` run on the raw mapping too, so their problems are reported
    even when other keys fail to parse (the models' own rules only run on a file that parses)."""
    data, node = _read_yaml(path, issues)
    if data is None:
        return None, None
    found = raw_checks(path, node, data) if raw_checks is not None else []
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        seen = {(i.key_path, i.reason) for i in found}
        reasons = {i.reason for i in found}
        for issue in _issues_from_validation(path, node, model, exc):
            # A whole-file model rule the raw checks already reported at its key.
            if (issue.key_path, issue.reason) in seen or (not issue.key_path and issue.reason in reasons):
                continue
            found.append(issue)
        issues.extend(found)
        return None, node
    issues.extend(found)
    expected = path.stem
    if getattr(parsed, "name", expected) != expected:
        issues.append(
            ConfigIssue(_display(path), "name", f"must match the file name {expected!r}", _node_line(node, ["name"]))
        )
    return parsed, node


def _names(values: Iterable[str]) -> str:
    return ", ".join(values) or "none"


def _unknown(kind: str, value: str, known: Sequence[str], where: str = "") -> str:
    """``unknown category 'Crytpo' for feed 'kalshi' (known: …; did you mean 'Crypto'?)``."""
    reason = f"unknown {kind} {value!r}{where} (known: {_names(known)}"
    close = difflib.get_close_matches(value.casefold(), [k.casefold() for k in known], n=1, cutoff=0.6)
    if close:
        suggestion = next(k for k in known if k.casefold() == close[0])
        reason += f"; did you mean {suggestion!r}?"
    return reason + ")"


def _str_items(value: Any) -> list[tuple[int, str]]:
    return [(i, v) for i, v in enumerate(value) if isinstance(v, str)] if isinstance(value, list) else []


def _raw_feed_checks(path: Path, node: yaml.Node | None, data: dict[str, Any]) -> list[ConfigIssue]:
    """Feed rules spanning several keys, on the raw mapping (see :func:`_validate_file`)."""
    lifecycle = data.get("lifecycle_channel")
    channels = data.get("channels")
    available = [v for _, v in _str_items(channels.get("available"))] if isinstance(channels, dict) else []
    if isinstance(lifecycle, str) and available and lifecycle not in available:
        reason = f"lifecycle_channel {lifecycle!r} is not in channels.available"
        return [ConfigIssue(_display(path), "lifecycle_channel", reason, _node_line(node, ["lifecycle_channel"]))]
    return []


def _raw_environment_checks(
    path: Path, node: yaml.Node | None, data: dict[str, Any], feeds: dict[str, FeedConfig], broken_feeds: set[str]
) -> list[ConfigIssue]:
    """Environment rules that need the feeds, on the raw mapping, so each is reported whatever else
    is wrong in the file (a typo'd key must not hide a typo'd category three lines below)."""
    issues: list[ConfigIssue] = []

    def issue(loc: list[str | int], reason: str) -> None:
        issues.append(ConfigIssue(_display(path), ".".join(map(str, loc)), reason, _node_line(node, loc)))

    env_feeds = data.get("feeds")
    if not isinstance(env_feeds, dict):
        return issues
    endpoint_set = data.get("endpoint_set", "prod")
    for name, body in env_feeds.items():
        loc: list[str | int] = ["feeds", str(name)]
        feed = feeds.get(name)
        if feed is None:
            if name not in broken_feeds:  # a feed whose own file is invalid is reported there
                issue(loc, f"unknown feed (known: {_names(sorted(feeds))})")
            continue
        if not isinstance(body, dict):
            continue
        if "categories" in body and "excludeCategories" in body:
            issue(loc, BOTH_FILTERS)
        if body.get("endpoint") is None and isinstance(endpoint_set, str) and endpoint_set not in feed.endpoints:
            issue(["endpoint_set"], f"feed {name!r} has no endpoint set {endpoint_set!r} "
                                    f"(has: {_names(sorted(feed.endpoints))}); add an `endpoint:` override")
        known = {c.casefold() for c in feed.categories}
        for key in ("categories", "excludeCategories"):
            for i, category in _str_items(body.get(key)):
                if category.casefold() not in known:
                    issue([*loc, key, i], _unknown("category", category, feed.categories, f" for feed {name!r}"))
        for i, channel in _str_items(body.get("channels")):
            if channel not in feed.channels.available:
                issue([*loc, "channels", i], _unknown("channel", channel, feed.channels.available))
        scope = body.get("channel_scope")
        for channel in scope if isinstance(scope, dict) else ():
            if channel not in feed.channels.available:
                issue([*loc, "channel_scope", str(channel)], _unknown("channel", str(channel), feed.channels.available))
        shard_size = body.get("shard_size")
        limit = feed.limits.markets_per_connection * feed.limits.connections
        if isinstance(shard_size, int) and not isinstance(shard_size, bool) and shard_size > limit:
            issue([*loc, "shard_size"], f"larger than the feed's connection limits allow ({limit})")
    return issues


def load_exchanges(root: str | os.PathLike[str]) -> ExchangeConfig:
    """Validate every feed and environment file under ``root``; raise one ConfigError listing all problems."""
    root_path = Path(root)
    issues: list[ConfigIssue] = []
    if not root_path.is_dir():
        raise ConfigError([ConfigIssue(_display(root_path), "", "exchanges folder does not exist")])
    feeds: dict[str, FeedConfig] = {}
    broken_feeds: set[str] = set()
    for path in sorted((root_path / "feeds").glob("*.y*ml")):
        feed, _ = _validate_file(path, FeedConfig, issues, _raw_feed_checks)
        if feed is not None:
            feeds[feed.name] = feed
        else:
            broken_feeds.add(path.stem)
    if not feeds and not issues:
        issues.append(ConfigIssue(_display(root_path / "feeds"), "", "no feed files (*.yaml) found"))
    environments: dict[str, EnvironmentConfig] = {}

    def environment_checks(path: Path, node: yaml.Node | None, data: dict[str, Any]) -> list[ConfigIssue]:
        return _raw_environment_checks(path, node, data, feeds, broken_feeds)

    for path in sorted((root_path / "environments").glob("*.y*ml")):
        env, _ = _validate_file(path, EnvironmentConfig, issues, environment_checks)
        if env is not None:
            environments[env.name] = env
    if issues:
        raise ConfigError(issues)
    return ExchangeConfig(root=root_path, feeds=feeds, environments=environments)
