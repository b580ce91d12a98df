"""Check Kubernetes objects against the API schema the ``kubernetes`` client is generated from.

Every model class of the client (``V1StatefulSet``, ``V1Container``, ...) carries the OpenAPI
field names (``attribute_map``) and types (``openapi_types``, e.g. ``list[V1EnvVar]``,
``dict(str, str)``); required fields are enforced by its setters. That is enough to walk an object
recursively and report, with the path, every unknown field (a typo like ``readinesProbe``), every
value of the wrong type, and every required field left out. No cluster, no network.

Strict where the client is: resource quantities are typed ``str``, so write ``cpu: "2"``, not
``cpu: 2``. Fields typed ``object`` are int-or-string in the API and accept exactly those.
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

import kubernetes.client as k8s

_LIST = re.compile(r"^list\[(.+)\]$")
_DICT = re.compile(r"^dict[(\[](\w+), (.+)[)\]]$")  # dict(str, str) or dict[str, str]
_DNS_NAME = re.compile(r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$")
_MISSING = re.compile(r"Invalid value for `(\w+)`, must not be `None`")
_SENTINEL = object()


class SchemaError(AssertionError):
    """One or more objects do not match the schema; the message lists every problem with its path."""


def model_name(api_version: str, kind: str) -> str:
    """``apps/v1`` + ``StatefulSet`` -> ``V1StatefulSet`` (the client's class naming)."""
    version = api_version.rsplit("/", 1)[-1]
    return version[:1].upper() + version[1:] + kind


def _snake(name: str) -> str:
    return re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower()


def api_class_name(api_version: str) -> str:
    """``rbac.authorization.k8s.io/v1`` -> ``RbacAuthorizationV1Api``; ``v1`` -> ``CoreV1Api``."""
    if "/" not in api_version:
        return "Core" + api_version.capitalize() + "Api"
    group, version = api_version.split("/")
    group = group.removesuffix(".k8s.io")
    return "".join(part.capitalize() for part in group.split(".")) + version.capitalize() + "Api"


@cache
def _configuration() -> k8s.Configuration:
    configuration = k8s.Configuration()
    configuration.client_side_validation = True
    return configuration


@cache
def required_fields(model: str) -> frozenset[str]:
    """Attributes the model's setters refuse to leave ``None`` (found by constructing it)."""
    cls = getattr(k8s, model)
    kwargs: dict[str, object] = {}
    required: set[str] = set()
    for _ in range(len(cls.openapi_types) + 1):
        try:
            cls(local_vars_configuration=_configuration(), **kwargs)
        except ValueError as exc:
            match = _MISSING.search(str(exc))
            if match is None or match.group(1) in kwargs:
                raise
            required.add(match.group(1))
            kwargs[match.group(1)] = _SENTINEL
        else:
            return frozenset(required)
    raise RuntimeError(f"cannot determine the required fields of {model}")


def _type_errors(value: Any, type_name: str, path: str) -> list[str]:
    if (match := _LIST.match(type_name)) is not None:
        if not isinstance(value, list):
            return [f"{path}: expected a list, got {type(value).__name__}"]
        errors: list[str] = []
        for i, item in enumerate(value):
            errors += _type_errors(item, match.group(1), f"{path}[{i}]")
        return errors
    if (match := _DICT.match(type_name)) is not None:
        if not isinstance(value, dict):
            return [f"{path}: expected a map, got {type(value).__name__}"]
        errors = []
        for key, item in value.items():
            if not isinstance(key, str):
                errors.append(f"{path}: key {key!r} is not a string")
            errors += _type_errors(item, match.group(2), f"{path}.{key}")
        return errors
    if type_name in ("str", "datetime", "date"):
        return [] if isinstance(value, str) else [f"{path}: expected a string, got {type(value).__name__} {value!r}"]
    if type_name == "bool":
        return [] if isinstance(value, bool) else [f"{path}: expected true/false, got {value!r}"]
    if type_name == "int":
        ok = isinstance(value, int) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer, got {value!r}"]
    if type_name == "float":
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected a number, got {value!r}"]
    if type_name == "object":  # int-or-string in the API
        ok = isinstance(value, (int, str)) and not isinstance(value, bool)
        return [] if ok else [f"{path}: expected an integer or a string, got {value!r}"]
    return _model_errors(value, type_name, path)


def _model_errors(value: Any, model: str, path: str) -> list[str]:
    cls = getattr(k8s, model, None)
    if cls is None:
        return [f"{path}: the client has no model {model}"]
    if not isinstance(value, dict):
        return [f"{path}: expected an object ({model}), got {type(value).__name__}"]
    by_json = {json_name: attr for attr, json_name in cls.attribute_map.items()}
    errors: list[str] = []
    for key, item in value.items():
        attr = by_json.get(key)
        if attr is None:
            known = ", ".join(sorted(by_json))
            errors.append(f"{path}.{key}: unknown field of {model} (known: {known})")
            continue
        if item is None:
            continue
        errors += _type_errors(item, cls.openapi_types[attr], f"{path}.{key}")
    for attr in sorted(required_fields(model)):
        if value.get(cls.attribute_map[attr]) is None:
            errors.append(f"{path}.{cls.attribute_map[attr]}: required by {model}")
    return errors


def object_errors(obj: Any) -> list[str]:
    """Every schema problem of one Kubernetes object, each prefixed with ``Kind/name``."""
    if not isinstance(obj, dict):
        return [f"not an object: {obj!r}"]
    api_version, kind = str(obj.get("apiVersion", "")), str(obj.get("kind", ""))
    name = (obj.get("metadata") or {}).get("name")
    where = f"{kind or '?'}/{name or '?'}"
    model = model_name(api_version, kind)
    if not api_version or not kind or getattr(k8s, model, None) is None:
        return [f"{where}: unknown apiVersion/kind {api_version!r}/{kind!r}"]
    api = getattr(k8s, api_class_name(api_version), None)
    snake = _snake(kind)
    if api is None or not (hasattr(api, f"create_namespaced_{snake}") or hasattr(api, f"create_{snake}")):
        return [f"{where}: {kind} is not served under apiVersion {api_version!r}"]
    errors = [f"{where}: {e}" for e in _model_errors(obj, model, "")]
    if not isinstance(name, str) or not _DNS_NAME.match(name) or len(name) > 253:
        errors.append(f"{where}: metadata.name must be a lowercase DNS name")
    return errors


def value_errors(value: Any, type_name: str, path: str = "") -> list[str]:
    """Problems of one value against a client type name (``V1ResourceRequirements``,
    ``list[V1Volume]``, ...), for Kubernetes fragments embedded in other config (Helm values)."""
    return _type_errors(value, type_name, path)


def assert_valid(objects: list[Any]) -> None:
    errors = [e for obj in objects for e in object_errors(obj)]
    if errors:
        raise SchemaError("\n".join(errors))
