"""Provisioning runs are given the admin's NATS credentials; every other run holds only the archiver's.

In Kubernetes each run is a pod that dagster-k8s's ``K8sRunLauncher`` builds from the code location's
config (deploy/dagster/values.yaml: the archiver's nkey as ``NATS_NKEY``, the CA) merged with the run's
``dagster-k8s/config`` tag. The jobs that provision (streams, headroom shards) carry the tag below: it
mounts the admin's nkey (Secret ``ssmd-nats-dagster``, the ``dagster`` user of deploy/nats/values.yaml)
and points ``SSMD_ADMIN_NATS_NKEY`` at it, which the ``nats_admin`` resource reads. A run without the
tag never has the seed on its file system. Other run launchers ignore the tag.
"""

from __future__ import annotations

import json
from typing import Any

from ingest_daemons.nats_settings import role_variable
from ssmd_dagster.resources import ADMIN_ROLE

K8S_CONFIG_TAG = "dagster-k8s/config"  # read by dagster-k8s (USER_DEFINED_K8S_CONFIG_KEY)
ADMIN_NKEY_SECRET = "ssmd-nats-dagster"
ADMIN_NKEY_DIR = "/var/run/secrets/ssmd/nats-admin"
ADMIN_NKEY_FILE = "nkey.seed"
ADMIN_VOLUME = "nats-admin-credentials"
SECRET_FILE_MODE = 0o440  # like every mounted credential here: group-readable for the pod's fsGroup


def admin_pod_config() -> dict[str, Any]:
    """The ``dagster-k8s/config`` value: the admin's nkey as a read-only file, and the variable naming it."""
    return {
        "container_config": {
            "env": [{"name": role_variable(ADMIN_ROLE, "NKEY"), "value": f"{ADMIN_NKEY_DIR}/{ADMIN_NKEY_FILE}"}],
            "volume_mounts": [{"name": ADMIN_VOLUME, "mount_path": ADMIN_NKEY_DIR, "read_only": True}],
        },
        "pod_spec_config": {
            "volumes": [
                {
                    "name": ADMIN_VOLUME,
                    "secret": {
                        "secret_name": ADMIN_NKEY_SECRET,
                        "default_mode": SECRET_FILE_MODE,
                        "items": [{"key": ADMIN_NKEY_FILE, "path": ADMIN_NKEY_FILE}],
                    },
                }
            ],
        },
    }


def admin_run_tags() -> dict[str, str]:
    """Tags of a job whose runs provision (JSON text: run tags are strings)."""
    return {K8S_CONFIG_TAG: json.dumps(admin_pod_config())}
