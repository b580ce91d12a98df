"""A nats-server with TLS and the least-privilege roles, set up on the spot on one machine.

``ssmd nats --secure`` and the test fixtures both use :func:`prepare_secure_nats`: it makes a CA and
a server certificate for the listen address, one user per role (random passwords; the connector
role once per feed) and the server config lines, and returns each role's client settings. The
passwords are written, with the role's settings, to ``<dir>/clients/<role>.env`` (mode 0600) so a
shell can ``source`` one; they are never logged. ``archiver.env`` and ``admin.env`` also carry the
role's own ``SSMD_{ROLE}_NATS_*`` variables: a shell that sources both runs Dagster with each job's
identity.
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ingest_daemons.logs import register_secret
from ingest_daemons.nats_certs import LocalCa
from ingest_daemons.nats_nkeys import KeyPair, create_user_seed
from ingest_daemons.nats_roles import (
    Permissions,
    RoleUser,
    archiver_permissions,
    authorization_block,
    cdc_permissions,
    connector_permissions,
)
from ingest_daemons.nats_settings import NatsSettings, NatsTls, role_variable
from ingest_daemons.private_files import write_private_file

DAGSTER_ROLES = ("archiver", "admin")  # ssmd_dagster.resources: the nats and nats_admin identities


@dataclass(frozen=True)
class SecureNats:
    """What a secure server needs (``config_lines``) and how each role connects to it."""

    config_lines: list[str]
    ca_file: Path
    clients: dict[str, NatsSettings] = field(repr=False)


def _password() -> str:
    secret = secrets.token_urlsafe(18)
    register_secret(secret)
    return secret


def prepare_secure_nats(
    directory: Path, url: str, env: str, feeds: Sequence[str], host: str = "127.0.0.1",
    extra_hosts: Sequence[str] = ("localhost",), handshake_first: bool = False,
) -> SecureNats:
    """Certificates, users and config for a server at ``url`` (``nats://host:port``).

    Roles: ``admin``, ``archiver``, ``cdc``, ``connector-<feed>`` (user/password) and
    ``connector-<feed>-nkey`` (the same permissions, authenticating with an nkey seed). With
    ``handshake_first`` the server expects TLS before its ``INFO`` and refuses anything else (start
    it with ``NatsServer(tls_first=True)``), and the clients are set to start with it.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = LocalCa()
    server_files = ca.issue(directory / "tls", "server", [host, *extra_hosts])
    tls = NatsTls(ca_file=server_files.ca, handshake_first=handshake_first)
    users: list[RoleUser] = []
    clients: dict[str, NatsSettings] = {}

    def add_password_user(role: str, permissions: Permissions | None) -> None:
        password = _password()
        users.append(RoleUser(role, permissions, user=role, password=password))
        clients[role] = NatsSettings.parse(url, user=role, password=password, tls=tls)

    add_password_user("admin", None)
    add_password_user("archiver", archiver_permissions())
    add_password_user("cdc", cdc_permissions(env))
    for feed in feeds:
        add_password_user(f"connector-{feed}", connector_permissions(env, feed))
        seed = create_user_seed()
        register_secret(seed)
        users.append(RoleUser(f"connector-{feed}-nkey", connector_permissions(env, feed),
                              nkey=KeyPair(seed).public_key))
        clients[f"connector-{feed}-nkey"] = NatsSettings.parse(url, nkey_seed=seed, tls=tls)
    config_lines = [
        "tls {\n"
        f'  cert_file: "{server_files.cert}"\n'
        f'  key_file: "{server_files.key}"\n'
        "  timeout: 5\n"
        + ("  handshake_first: true\n" if handshake_first else "")
        + "}",
        authorization_block(users),
    ]
    client_dir = directory / "clients"
    client_dir.mkdir(exist_ok=True)
    for role, settings in clients.items():
        lines = [f"NATS_URL={settings.url}", f"NATS_CA={server_files.ca}"]
        if settings.user is not None:
            lines += [f"NATS_USER={settings.user}", f"NATS_PASSWORD={settings.password}"]
            if role in DAGSTER_ROLES:  # Dagster holds both: sourcing both files gives each job its own
                lines += [f"{role_variable(role, 'USER')}={settings.user}",
                          f"{role_variable(role, 'PASSWORD')}={settings.password}"]
        if settings.nkey_seed is not None:
            lines.append(f"NATS_NKEY={settings.nkey_seed}")
        write_private_file(client_dir / f"{role}.env", ("\n".join(lines) + "\n").encode())
    return SecureNats(config_lines, server_files.ca, clients)
