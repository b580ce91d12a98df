"""Shard counts in Kubernetes: the replicas of the feed's connector StatefulSet.

Each connector pod's ordinal is its shard index (``apps.kubernetes.io/pod-index``, passed to
``ssmd connector --shard``), so raising ``replicas`` from N to N+1 starts exactly one new shard,
N, at the end; existing shards are untouched.

The scaler talks to the ``scale`` subresource (``/apis/apps/v1/namespaces/{ns}/statefulsets/
{name}/scale``), the same one ``kubectl scale`` uses, for two reasons: RBAC can grant exactly
``get``/``patch`` on ``statefulsets/scale`` (the Dagster run cannot edit the pod template, images
or secrets), and the object is tiny. Every raise is a compare-and-set: the merge patch carries the
``resourceVersion`` that was read, so a concurrent change (an operator's ``kubectl scale``, a
second Dagster run) makes the API answer 409 and the scaler re-reads instead of overwriting a
higher count with a lower one.

The ``kubernetes`` client is imported lazily so that loading the Dagster definitions does not
pay for its model classes unless this scaler is selected.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from typing import Any

import urllib3

from ingest_daemons.scaling.base import (
    DEFAULT_MAX_SHARDS,
    DEFAULT_NAME_PATTERN,
    ScaleResult,
    ScalerSettings,
    ScalingError,
    check_target,
)

DEFAULT_REQUEST_TIMEOUT_S = 10.0
DEFAULT_CONFLICT_RETRIES = 5
# A dict body would otherwise go out as application/json-patch+json (the client picks the first
# content type the endpoint lists), which the API server rejects for an object body.
MERGE_PATCH = "application/merge-patch+json"
# Connection refused, timeouts and TLS failures surface as urllib3 errors (after its retries).
_TRANSPORT_ERRORS = (urllib3.exceptions.HTTPError, OSError)


class KubernetesShardScaler:
    """Reads and raises ``spec.replicas`` of ``{name_pattern}`` StatefulSets in one namespace."""

    def __init__(
        self,
        apps_api: Any,
        namespace: str,
        *,
        name_pattern: str = DEFAULT_NAME_PATTERN,
        max_shards: int = DEFAULT_MAX_SHARDS,
        request_timeout_s: float = DEFAULT_REQUEST_TIMEOUT_S,
        conflict_retries: int = DEFAULT_CONFLICT_RETRIES,
    ) -> None:
        """``apps_api`` is a ``kubernetes.client.AppsV1Api`` (any configuration: in-cluster,
        kubeconfig, or a test server)."""
        # Same validation as from the environment: the pattern must use {feed}, the cap be positive.
        ScalerSettings(kind="kubernetes", namespace=namespace, name_pattern=name_pattern, max_shards=max_shards)
        self._api = apps_api
        self.namespace = namespace
        self.name_pattern = name_pattern
        self._max_shards = max_shards
        self._timeout = request_timeout_s
        self._conflict_retries = conflict_retries

    @classmethod
    def from_settings(
        cls, settings: ScalerSettings, environ: Mapping[str, str] | None = None
    ) -> KubernetesShardScaler:
        """Build a client the standard way: in-cluster when running in a pod (the service account
        of the Dagster run), else ``$KUBECONFIG`` / ``~/.kube/config``."""
        from kubernetes import client, config

        env = os.environ if environ is None else environ
        configuration = client.Configuration()
        try:
            if env.get("KUBERNETES_SERVICE_HOST"):
                config.load_incluster_config(client_configuration=configuration)
            else:
                config.load_kube_config(config_file=env.get("KUBECONFIG"), client_configuration=configuration)
        except (config.ConfigException, OSError) as exc:
            raise ScalingError(f"cannot configure the Kubernetes client: {exc}") from exc
        api = client.AppsV1Api(client.ApiClient(configuration))
        return cls(
            api,
            settings.resolved_namespace(),
            name_pattern=settings.name_pattern,
            max_shards=settings.max_shards,
        )

    def statefulset_name(self, feed: str) -> str:
        return self.name_pattern.format(feed=feed)

    def _target(self, feed: str) -> str:
        return f"statefulset {self.namespace}/{self.statefulset_name(feed)}"

    def _read(self, feed: str) -> tuple[int, str | None]:
        from kubernetes.client.exceptions import ApiException

        try:
            scale = self._api.read_namespaced_stateful_set_scale(
                self.statefulset_name(feed), self.namespace, _request_timeout=self._timeout
            )
        except ApiException as exc:
            raise self._error(feed, "read", exc) from exc
        except _TRANSPORT_ERRORS as exc:
            raise ScalingError(f"{self._target(feed)}: cannot reach the Kubernetes API: {exc}") from exc
        replicas = scale.spec.replicas if scale.spec is not None else None
        version = scale.metadata.resource_version if scale.metadata is not None else None
        return int(replicas or 0), version

    def shard_count(self, feed: str) -> int:
        return self._read(feed)[0]

    def ensure_at_least(self, feed: str, shards: int) -> ScaleResult:
        from kubernetes.client.exceptions import ApiException

        check_target(feed, shards, self._max_shards)
        for _attempt in range(self._conflict_retries + 1):
            current, version = self._read(feed)
            if current >= shards:
                return ScaleResult(feed=feed, target=self._target(feed), previous=current, current=current)
            body: dict[str, Any] = {"spec": {"replicas": shards}}
            if version:
                body["metadata"] = {"resourceVersion": version}
            try:
                patched = self._api.patch_namespaced_stateful_set_scale(
                    self.statefulset_name(feed),
                    self.namespace,
                    body,
                    _content_type=MERGE_PATCH,
                    _request_timeout=self._timeout,
                )
            except ApiException as exc:
                if exc.status == 409:
                    continue  # changed since we read it: read again, decide again
                raise self._error(feed, "patch", exc) from exc
            except _TRANSPORT_ERRORS as exc:
                raise ScalingError(f"{self._target(feed)}: cannot reach the Kubernetes API: {exc}") from exc
            now = patched.spec.replicas if patched.spec is not None else shards
            return ScaleResult(feed=feed, target=self._target(feed), previous=current, current=int(now))
        raise ScalingError(
            f"{self._target(feed)}: replicas kept changing under us "
            f"({self._conflict_retries + 1} conflicting updates); not raised to {shards}"
        )

    def _error(self, feed: str, verb: str, exc: Any) -> ScalingError:
        target = self._target(feed)
        status = getattr(exc, "status", None)
        if status == 404:
            return ScalingError(
                f"{target} not found (is the {feed} connector deployed in namespace {self.namespace!r}, "
                f"and does the StatefulSet name pattern {self.name_pattern!r} match it?)"
            )
        if status in (401, 403):
            return ScalingError(
                f"{target}: not allowed to {verb} statefulsets/scale (HTTP {status}); the run's service "
                "account needs the ssmd-shard-scaler Role (get, patch on statefulsets/scale)"
            )
        reason = getattr(exc, "reason", "") or "error"
        message = _status_message(getattr(exc, "body", None))
        detail = f": {message}" if message else ""
        return ScalingError(f"{target}: {verb} failed: HTTP {status} {reason}{detail}")


def _status_message(body: Any) -> str:
    """The ``message`` of a Kubernetes ``Status`` response body, if there is one."""
    if not body:
        return ""
    try:
        parsed = json.loads(body)
    except (TypeError, ValueError):
        return ""
    message = parsed.get("message") if isinstance(parsed, dict) else None
    return str(message)[:300] if message else ""
