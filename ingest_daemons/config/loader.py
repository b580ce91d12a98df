"""Load and validate every file under an exchanges folder, collecting all problems at once.

A problem is reported as ``file:line: key.path: reason``. Line numbers come from the YAML node
tree, so an operator can jump straight to the offending key.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
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
    path: Path, model: type[_M], issues: list[ConfigIssue], feeds: dict[str, FeedConfig] | None = None
) -> tuple[_M | None, Any]:
    data, node = _read_yaml(path, issues)
    if data is None:
        return None, None
    found = _raw_environment_checks(path, node, data, feeds) if feeds is not None else []
    try:
        parsed = model.model_validate(data)
    except ValidationError as exc:
        seen = {(i.key_path, i.reason) for i in found}
        found += [i for i in _issues_from_validation(path, node, model, exc) if (i.key_path, i.reason) not in seen]
        issues.extend(found)
        return None, node
    issues.extend(found)
    expected = path.stem
    if getattr(parsed, "name", expected) != expected:
        issues.append(
            ConfigIssue(_display(path), "name", f"must match the file name {expected!r}", _node_line(node, ["name"]))
        )
    return parsed, node


def _raw_environment_checks(
    path: Path, node: yaml.Node | None, data: dict[str, Any], feeds: dict[str, FeedConfig]
) -> list[ConfigIssue]:
    """Rules checked on the raw mapping, so they are reported even when other keys fail to parse."""
    issues: list[ConfigIssue] = []
    env_feeds = data.get("feeds")
    if not isinstance(env_feeds, dict):
        return issues
    for name, body in env_feeds.items():
        loc: list[str | int] = ["feeds", str(name)]
        if name not in feeds:
            reason = f"unknown feed (known: {', '.join(sorted(feeds)) or 'none'})"
            issues.append(ConfigIssue(_display(path), ".".join(map(str, loc)), reason, _node_line(node, loc)))
        if isinstance(body, dict) and "categories" in body and "excludeCategories" in body:
            issues.append(ConfigIssue(_display(path), ".".join(map(str, loc)), BOTH_FILTERS, _node_line(node, loc)))
    return issues


def _cross_check(
    path: Path, node: yaml.Node | None, env: EnvironmentConfig, feeds: dict[str, FeedConfig]
) -> list[ConfigIssue]:
    issues: list[ConfigIssue] = []

    def issue(loc: list[str | int], reason: str) -> None:
        issues.append(ConfigIssue(_display(path), ".".join(map(str, loc)), reason, _node_line(node, loc)))

    for feed_name, feed_env in env.feeds.items():
        feed = feeds.get(feed_name)
        if feed is None:
            continue  # reported by _raw_environment_checks
        if feed_env.endpoint is None and env.endpoint_set not in feed.endpoints:
            issue(
                ["endpoint_set"],
                f"feed {feed_name!r} has no endpoint set {env.endpoint_set!r} "
                f"(has: {', '.join(sorted(feed.endpoints))}); add an `endpoint:` override",
            )
        known = {c.casefold() for c in feed.categories}
        for key, values in (("categories", feed_env.categories), ("excludeCategories", feed_env.exclude_categories)):
            for i, category in enumerate(values or []):
                if category.casefold() not in known:
                    issue(["feeds", feed_name, key, i], f"unknown category {category!r} for feed {feed_name!r}")
        for i, channel in enumerate(feed_env.channels or []):
            if channel not in feed.channels.available:
                issue(
                    ["feeds", feed_name, "channels", i],
                    f"unknown channel {channel!r} (available: {', '.join(feed.channels.available)})",
                )
        if feed_env.shard_size > feed.limits.markets_per_connection * feed.limits.connections:
            issue(["feeds", feed_name, "shard_size"], "larger than the feed's connection limits allow")
    return issues


def load_exchanges(root: str | os.PathLike[str]) -> ExchangeConfig:
    """Validate every feed and environment file under ``root``; raise one ConfigError listing all problems."""
    root_path = Path(root)
    issues: list[ConfigIssue] = []
    if not root_path.is_dir():
        raise ConfigError([ConfigIssue(_display(root_path), "", "exchanges folder does not exist")])
    feeds: dict[str, FeedConfig] = {}
    for path in sorted((root_path / "feeds").glob("*.y*ml")):
        feed, _ = _validate_file(path, FeedConfig, issues)
        if feed is not None:
            feeds[feed.name] = feed
    if not feeds and not issues:
        issues.append(ConfigIssue(_display(root_path / "feeds"), "", "no feed files (*.yaml) found"))
    environments: dict[str, EnvironmentConfig] = {}
    for path in sorted((root_path / "environments").glob("*.y*ml")):
        env, node = _validate_file(path, EnvironmentConfig, issues, feeds)
        if env is not None:
            issues.extend(_cross_check(path, node, env, feeds))
            environments[env.name] = env
    if issues:
        raise ConfigError(issues)
    return ExchangeConfig(root=root_path, feeds=feeds, environments=environments)
