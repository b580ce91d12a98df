"""Object names and URIs of archive partitions in a bucket.

``{prefix}/{env}/{stream}/{YYYY-MM-DD}.jsonl.gz`` and ``….manifest.json`` beside it: the local
archive layout under one prefix. The prefix is normalised (no leading, trailing or doubled
slashes; empty means the bucket root) so an object is never nested twice by a stray slash or a
prefix repeated in the stream path.
"""

from __future__ import annotations

from dataclasses import dataclass

from ingest_daemons.archive.layout import DATA_SUFFIX, MANIFEST_SUFFIX, parse_key

GS_SCHEME = "gs://"


def normalise_prefix(prefix: str | None) -> str:
    """``"/ssmd//archive/"`` → ``"ssmd/archive"``; None or only slashes → ``""``."""
    return "/".join(part for part in (prefix or "").split("/") if part)


@dataclass(frozen=True)
class ObjectNaming:
    """Maps (env, stream, day) to object names under one prefix."""

    prefix: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", normalise_prefix(self.prefix))

    def directory(self, env: str, stream: str) -> str:
        parts = [p for p in (self.prefix, env, stream) if p]
        return "/".join(parts)

    def data_name(self, env: str, stream: str, key: str) -> str:
        parse_key(key)
        return f"{self.directory(env, stream)}/{key}{DATA_SUFFIX}"

    def manifest_name(self, env: str, stream: str, key: str) -> str:
        parse_key(key)
        return f"{self.directory(env, stream)}/{key}{MANIFEST_SUFFIX}"


def gs_uri(bucket: str, name: str) -> str:
    return f"{GS_SCHEME}{bucket}/{name}"


def parse_gs_uri(uri: str) -> tuple[str, str]:
    """``gs://bucket/a/b.jsonl.gz`` → ``("bucket", "a/b.jsonl.gz")``; ValueError otherwise."""
    if not uri.startswith(GS_SCHEME):
        raise ValueError(f"not a gs:// URI: {uri!r}")
    bucket, _, name = uri[len(GS_SCHEME) :].partition("/")
    if not bucket or not name:
        raise ValueError(f"gs:// URI needs a bucket and an object name: {uri!r}")
    return bucket, name


def manifest_name_for(data_name: str) -> str:
    """The manifest object beside a data object (``….jsonl.gz`` → ``….manifest.json``)."""
    if not data_name.endswith(DATA_SUFFIX):
        raise ValueError(f"not a partition data object (must end in {DATA_SUFFIX}): {data_name!r}")
    return data_name[: -len(DATA_SUFFIX)] + MANIFEST_SUFFIX
