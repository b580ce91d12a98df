"""Resources of the archive's downstream copies: the object store (GCS or a local folder) and the
Parquet folder.

Like the other resources, values come from the environment YAML (``gcs.bucket``, ``gcs.prefix``)
and the data directory, and a field that is set (run config, tests) pins it:

* ``gcs.bucket`` set → objects go to ``gs://{bucket}/{prefix}/{env}/{stream}/{day}.…`` through
  dagster-gcp's :class:`~dagster_gcp.GCSResource` client (application default credentials, or
  the emulator named by ``STORAGE_EMULATOR_HOST``);
* no bucket → the same layout under ``{data_dir}/bucket/`` (:class:`LocalFolderStore`), so the
  asset graph is complete on a laptop.
"""

from __future__ import annotations

from pathlib import Path

from dagster import ConfigurableResource
from dagster_gcp import GCSResource
from pydantic import Field

from ingest_daemons.config import ResolvedEnvironment
from ingest_daemons.gcs import GcsStore, LocalFolderStore, ObjectNaming, ObjectStore, local_bucket_root
from ingest_daemons.parquet import PARQUET_DIR
from ssmd_dagster.resources import SsmdConfigResource


class ArchiveCopyResource(ConfigurableResource):  # type: ignore[type-arg]
    """Where archive partitions are copied (a bucket, or a local folder standing in for one)."""

    config: SsmdConfigResource
    bucket: str | None = Field(default=None, description="override; default the environment's gcs.bucket")
    prefix: str | None = Field(default=None, description="override; default the environment's gcs.prefix")
    local_root: str | None = Field(
        default=None, description="stand-in bucket folder when no bucket is set; default {data_dir}/bucket"
    )
    project: str | None = Field(default=None, description="GCP project for the client (default: from credentials)")

    def bucket_name(self) -> str | None:
        return self.bucket or self.config.environment().config.gcs.bucket

    def naming(self) -> ObjectNaming:
        prefix = self.prefix if self.prefix is not None else self.config.environment().config.gcs.prefix
        return ObjectNaming(prefix)

    def store(self) -> ObjectStore:
        bucket = self.bucket_name()
        if bucket:
            return GcsStore(GCSResource(project=self.project).get_client(), bucket)
        root = Path(self.local_root) if self.local_root else local_bucket_root(self.config.environment().data_dir)
        return LocalFolderStore(root)

    def describe(self) -> str:
        bucket = self.bucket_name()
        return f"gs://{bucket}" if bucket else "a local folder (no gcs.bucket configured)"


class ParquetStorageResource(ConfigurableResource):  # type: ignore[type-arg]
    """Root of the typed tables: ``{root}/{env}/{stream}/{day}/{table}.parquet``."""

    config: SsmdConfigResource
    root: str | None = Field(default=None, description="override; default {data_dir}/parquet")

    def root_path(self) -> Path:
        return Path(self.root) if self.root else self.config.environment().data_dir / PARQUET_DIR


def copy_resources(env: ResolvedEnvironment) -> dict[str, ConfigurableResource]:  # type: ignore[type-arg]
    """``archive_copy`` and ``parquet_storage``, pinned to the environment like ``default_resources``."""
    config = SsmdConfigResource(
        env_name=env.name,
        exchanges_dir=str(env.settings.exchanges_dir.resolve()),
        data_dir=str(env.settings.data_dir),
    )
    return {
        "archive_copy": ArchiveCopyResource(config=config),
        "parquet_storage": ParquetStorageResource(config=config),
    }
