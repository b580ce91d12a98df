"""A small client of the Dagster webserver's GraphQL API: launch a job's run, follow its events.

The data plane never imports Dagster (design §1), so ``ssmd archive now`` talks to the running
webserver over HTTP, as the UI does. Names it relies on (documented in ``docs/dagster.md``): the
code location ``ssmd`` (``workspace.yaml``), the repository ``__repository__`` (what Dagster calls
the repository of a ``Definitions`` object), the per-feed jobs ``archive_{env}_{feed}``, and the
op of each archive asset, its key joined by ``__`` (``archive__dev__kalshi__economics``), which is
where run config goes.
"""

from __future__ import annotations

import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import Any

import orjson

from ingest_daemons.errors import SsmdError

DEFAULT_TIMEOUT_S = 15.0
FINISHED = frozenset({"SUCCESS", "FAILURE", "CANCELED"})

ASSET_NODES = """
{ assetNodes { assetKey { path } opNames jobNames repository { name location { name } } } }
"""

LAUNCH = """
mutation Launch($params: ExecutionParams!) {
  launchPipelineExecution(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { runId } }
    ... on PipelineConfigValidationInvalid { errors { message } }
    ... on Error { message }
  }
}
"""

FOLLOW = """
query Follow($runId: ID!, $cursor: String) {
  runOrError(runId: $runId) { __typename ... on Run { status } ... on Error { message } }
  logsForRun(runId: $runId, afterCursor: $cursor) {
    __typename
    ... on EventConnection {
      cursor
      events {
        __typename
        ... on MaterializationEvent {
          assetKey { path }
          partition
          metadataEntries { label ... on IntMetadataEntry { intValue } ... on FloatMetadataEntry { floatValue } }
        }
        ... on ExecutionStepFailureEvent { stepKey error { message } }
        ... on RunFailureEvent { message }
      }
    }
    ... on Error { message }
  }
}
"""


class DagsterApiError(SsmdError):
    """The webserver could not be reached, or answered with an error."""


@dataclass(frozen=True)
class JobTarget:
    """A job and the ops of the assets it materialises (run config is keyed by op name)."""

    location: str
    repository: str
    job: str
    op_names: tuple[str, ...]
    asset_keys: tuple[str, ...]


@dataclass
class RunProgress:
    status: str
    materializations: list[dict[str, Any]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)


class DagsterApi:
    def __init__(self, url: str, timeout_s: float = DEFAULT_TIMEOUT_S) -> None:
        self.url = url.rstrip("/")
        self.timeout_s = timeout_s

    def query(self, text: str, variables: dict[str, Any] | None = None) -> dict[str, Any]:
        body = orjson.dumps({"query": text, "variables": variables or {}})
        request = urllib.request.Request(f"{self.url}/graphql", data=body,
                                         headers={"Content-Type": "application/json"}, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout_s) as response:
                answer = orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise DagsterApiError(f"Dagster at {self.url} answered HTTP {exc.code}") from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise DagsterApiError(f"Dagster does not answer at {self.url} ({reason})") from None
        if answer.get("errors"):
            raise DagsterApiError(f"Dagster GraphQL error: {answer['errors'][0].get('message')}")
        data: dict[str, Any] = answer.get("data") or {}
        return data

    def archive_jobs(self, env: str) -> list[JobTarget]:
        """The per-feed archive jobs of ``env`` with their assets' ops, from the asset graph."""
        jobs: dict[tuple[str, str, str], tuple[list[str], list[str]]] = {}
        for node in self.query(ASSET_NODES).get("assetNodes", []):
            path = node["assetKey"]["path"]
            if len(path) != 4 or path[0] != "archive" or path[1] != env:
                continue
            job = f"archive_{env}_{path[2]}"
            if job not in node["jobNames"]:
                continue
            repo = node["repository"]
            ops, keys = jobs.setdefault((repo["location"]["name"], repo["name"], job), ([], []))
            ops.extend(node["opNames"])
            keys.append("/".join(path))
        return [JobTarget(loc, repo, job, tuple(sorted(ops)), tuple(sorted(keys)))
                for (loc, repo, job), (ops, keys) in sorted(jobs.items())]

    def launch(self, target: JobTarget, run_config: dict[str, Any], tags: dict[str, str]) -> str:
        params = {
            "selector": {"repositoryLocationName": target.location, "repositoryName": target.repository,
                         "jobName": target.job},
            "runConfigData": run_config,
            "executionMetadata": {"tags": [{"key": k, "value": v} for k, v in tags.items()]},
        }
        result = self.query(LAUNCH, {"params": params})["launchPipelineExecution"]
        if result["__typename"] != "LaunchRunSuccess":
            detail = result.get("message") or "; ".join(e["message"] for e in result.get("errors", []))
            raise DagsterApiError(f"Dagster refused to launch {target.job}: {result['__typename']}: {detail}")
        return str(result["run"]["runId"])

    def follow(self, run_id: str, cursor: str | None) -> tuple[RunProgress, str | None]:
        """The run's status and the events after ``cursor``; returns the new cursor."""
        data = self.query(FOLLOW, {"runId": run_id, "cursor": cursor})
        run, logs = data["runOrError"], data["logsForRun"]
        if run["__typename"] != "Run":
            raise DagsterApiError(f"run {run_id}: {run.get('message', run['__typename'])}")
        progress = RunProgress(status=str(run["status"]))
        if logs["__typename"] == "EventConnection":
            for event in logs["events"]:
                kind = event["__typename"]
                if kind == "MaterializationEvent":
                    progress.materializations.append(event)
                elif kind == "ExecutionStepFailureEvent":
                    error = (event.get("error") or {}).get("message", "").strip().splitlines()
                    progress.failures.append(f"{event['stepKey']}: {error[0] if error else 'failed'}")
                elif kind == "RunFailureEvent":
                    progress.failures.append(str(event.get("message", "run failed")))
            cursor = str(logs["cursor"])
        return progress, cursor


def metadata_numbers(event: dict[str, Any]) -> dict[str, float]:
    """Numeric metadata of a MaterializationEvent, by label."""
    out: dict[str, float] = {}
    for entry in event.get("metadataEntries", []):
        value = entry.get("intValue", entry.get("floatValue"))
        if value is not None:
            out[entry["label"]] = value
    return out
