"""How to reach NATS: servers, credentials and TLS, in one object every client takes.

Three clients share it: the connector's publisher, the archive's wire reader and nats-py (KV, CDC,
control plane). Values come from the environment YAML (``nats:`` section) with the conventional
variables on top: ``NATS_URL`` (comma-separated servers), ``NATS_CREDS`` (a creds file: user JWT and
nkey seed), ``NATS_NKEY`` (an nkey seed file, or the seed itself), ``NATS_USER``/``NATS_PASSWORD``,
``NATS_TOKEN``, ``NATS_CA``, ``NATS_CERT``, ``NATS_KEY``, ``NATS_TLS_SERVER_NAME`` and
``NATS_TLS_FIRST``. Passwords, tokens and seeds are read only from variables or files, never from the
YAML, and every secret is registered for log redaction as soon as it is read.

Credentials in a URL (``nats://user:pass@host``, ``nats://token@host``) still work: they move into
the settings and the server list keeps only ``scheme://host:port``, so a server list is safe to log.
"""

from __future__ import annotations

import os
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

from ingest_daemons.errors import SsmdError
from ingest_daemons.logs import register_secret
from ingest_daemons.nats_nkeys import KeyPair

DEFAULT_PORT = 4222
DEFAULT_URL = "nats://127.0.0.1:4222"
_TRUE = {"1", "true", "yes", "on"}
# A creds file: the user JWT and the nkey seed, each between dashed marker lines.
_CREDS_BLOCK = re.compile(r"-{3,}[^\n]*-{3,}\r?\n\s*([\w\-.=]+)\s*\r?\n-{3,}[^\n]*-{3,}")


class NatsSettingsError(SsmdError):
    """NATS settings that cannot work (an unreadable creds file, a bad URL); never carries a secret."""


@dataclass(frozen=True)
class NatsServerAddress:
    """One server: where to connect and whether TLS is asked for by the URL (``tls://``)."""

    scheme: str
    host: str
    port: int
    # The name its TLS certificate is checked against when not the host: a server learnt from a
    # cluster's INFO (an address) is checked against the configured server's name, as nats-py does.
    tls_name: str | None = None

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.host}:{self.port}"

    @property
    def wants_tls(self) -> bool:
        return self.scheme == "tls"


@dataclass(frozen=True)
class NatsTls:
    """Client TLS: the CA to trust (else the system's), a client certificate, and the name to verify."""

    ca_file: Path | None = None
    cert_file: Path | None = None
    key_file: Path | None = None
    server_name: str | None = None
    handshake_first: bool = False  # TLS before the server's INFO (server ``tls { handshake_first: true }``)

    @property
    def configured(self) -> bool:
        return any((self.ca_file, self.cert_file, self.key_file, self.server_name, self.handshake_first))

    def context(self) -> ssl.SSLContext:
        """A verifying client context (hostname checked; a wrong CA fails the handshake)."""
        try:
            ctx = ssl.create_default_context(cafile=str(self.ca_file) if self.ca_file else None)
            if self.cert_file is not None:
                ctx.load_cert_chain(str(self.cert_file), str(self.key_file) if self.key_file else None)
        except (OSError, ssl.SSLError) as exc:
            raise NatsSettingsError(f"cannot load the NATS TLS files: {type(exc).__name__}: {exc}") from None
        return ctx


@dataclass(frozen=True)
class NatsSettings:
    """Servers (tried in order, rotated on reconnect), one way to authenticate, and TLS."""

    servers: tuple[NatsServerAddress, ...]
    creds_file: Path | None = None
    nkey_seed: str | None = field(default=None, repr=False)
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    token: str | None = field(default=None, repr=False)
    tls: NatsTls = field(default_factory=NatsTls)

    # ------------------------------------------------------------------ building

    @classmethod
    def parse(cls, url: str, **values: Any) -> NatsSettings:
        """Settings from a (comma-separated) URL list, credentials in the URLs lifted out."""
        servers = []
        user = password = token = None
        for part in (p.strip() for p in url.split(",")):
            if not part:
                continue
            parsed = urlparse(part if "://" in part else f"nats://{part}")
            scheme = parsed.scheme or "nats"
            if scheme not in {"nats", "tls"}:
                raise NatsSettingsError(f"unsupported NATS URL scheme {scheme!r} (use nats:// or tls://)")
            try:
                port = parsed.port or DEFAULT_PORT
            except ValueError:
                raise NatsSettingsError(f"bad port in NATS URL for host {parsed.hostname!r}") from None
            servers.append(NatsServerAddress(scheme, parsed.hostname or "127.0.0.1", port))
            if parsed.username and parsed.password is not None:
                user, password = unquote(parsed.username), unquote(parsed.password)
            elif parsed.username:
                token = unquote(parsed.username)
        if not servers:
            raise NatsSettingsError("no NATS server URL given")
        settings = cls(tuple(servers), user=user, password=password, token=token)
        settings = replace(settings, **values) if values else settings
        settings.register_secrets()
        return settings

    @classmethod
    def from_sources(
        cls, yaml: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None,
        url: str | None = None,
    ) -> NatsSettings:
        """YAML values (the environment's ``nats_url`` and ``nats:`` section) under the variables.

        ``url`` (a CLI flag) beats ``NATS_URL``, which beats the YAML's servers.
        """
        env = os.environ if environ is None else environ
        yaml = yaml or {}
        tls_yaml: Mapping[str, Any] = yaml.get("tls") or {}

        def pick(var: str, key: str | None, source: Mapping[str, Any] = yaml) -> str | None:
            value = env.get(var) or (source.get(key) if key else None)
            return str(value) if value else None

        settings = cls.parse(url or env.get("NATS_URL") or yaml.get("url") or DEFAULT_URL)
        nkey = env.get("NATS_NKEY") or yaml.get("nkey")
        tls = NatsTls(
            ca_file=_path(pick("NATS_CA", "ca", tls_yaml)),
            cert_file=_path(pick("NATS_CERT", "cert", tls_yaml)),
            key_file=_path(pick("NATS_KEY", "key", tls_yaml)),
            server_name=pick("NATS_TLS_SERVER_NAME", "server_name", tls_yaml),
            handshake_first=(env.get("NATS_TLS_FIRST", "").lower() in _TRUE) or bool(tls_yaml.get("handshake_first")),
        )
        settings = replace(
            settings,
            creds_file=_path(pick("NATS_CREDS", "creds")),
            nkey_seed=_read_seed(str(nkey)) if nkey else None,
            user=env.get("NATS_USER") or yaml.get("user") or settings.user,
            password=env.get("NATS_PASSWORD") or settings.password,
            token=env.get("NATS_TOKEN") or settings.token,
            tls=tls,
        )
        settings.register_secrets()
        return settings

    def register_secrets(self) -> None:
        for secret in (self.password, self.token, self.nkey_seed):
            register_secret(secret)

    def for_role(self, role: str, environ: Mapping[str, str] | None = None) -> NatsSettings:
        """These servers and TLS with the credentials of ``role``, when the process was given them.

        One process may hold two identities for different jobs (Dagster: the ``archiver`` reads
        streams, the ``admin`` provisions them): ``SSMD_{ROLE}_NATS_CREDS``, ``_NKEY``, ``_USER``,
        ``_PASSWORD`` and ``_TOKEN`` (see :func:`role_variable`), when any is set, replace every
        credential of these settings, so a role never mixes its user with another's creds file.
        With none set the settings are returned as they are: a process given one identity (or none,
        as the local stack) uses it for every job, and the server refuses what that user may not do.
        """
        env = os.environ if environ is None else environ
        values = {name: env.get(role_variable(role, name)) or None for name in ROLE_CREDENTIALS}
        if not any(values.values()):
            return self
        nkey = values["NKEY"]
        chosen = replace(
            self,
            creds_file=_path(values["CREDS"]),
            nkey_seed=_read_seed(nkey, role_variable(role, "NKEY")) if nkey else None,
            user=values["USER"],
            password=values["PASSWORD"],
            token=values["TOKEN"],
        )
        chosen.register_secrets()
        return chosen

    # ------------------------------------------------------------------ using

    @property
    def url(self) -> str:
        """The server list without credentials (safe to log and to show)."""
        return ",".join(server.url for server in self.servers)

    @property
    def auth_method(self) -> str:
        if self.creds_file is not None:
            return "creds"
        if self.nkey_seed is not None:
            return "nkey"
        if self.user is not None:
            return "user"
        if self.token is not None:
            return "token"
        return "none"

    def ssl_context(self) -> ssl.SSLContext | None:
        """The client TLS context when TLS is configured or a URL says ``tls://``; else None (TLS then
        still happens with the system's CAs if the server requires it)."""
        if self.tls.configured or any(server.wants_tls for server in self.servers):
            return self.tls.context()
        return None

    def read_creds(self) -> tuple[str, KeyPair]:
        """The user JWT and key pair from the creds file."""
        assert self.creds_file is not None
        try:
            text = self.creds_file.read_text()
        except OSError as exc:
            raise NatsSettingsError(f"cannot read the NATS creds file {self.creds_file}: {exc.strerror}") from None
        blocks = _CREDS_BLOCK.findall(text)
        if len(blocks) < 2:
            raise NatsSettingsError(f"{self.creds_file} is not a NATS creds file (no JWT and seed blocks)")
        jwt, seed = blocks[0], blocks[1]
        register_secret(seed)
        register_secret(jwt)
        return jwt, KeyPair(seed)

    def connect_auth(self, nonce: str | None) -> dict[str, str]:
        """The authentication fields of ``CONNECT`` for the own-protocol clients (the nonce is the one
        in this connection's ``INFO``; nkey and JWT authentication sign it)."""
        if self.creds_file is not None or self.nkey_seed is not None:
            if nonce is None:
                raise NatsSettingsError("the NATS server sent no nonce to sign; is nkey/JWT auth enabled there?")
            if self.creds_file is not None:
                jwt, pair = self.read_creds()
                return {"jwt": jwt, "sig": pair.sign_nonce(nonce)}
            assert self.nkey_seed is not None
            pair = KeyPair(self.nkey_seed)
            return {"nkey": pair.public_key, "sig": pair.sign_nonce(nonce)}
        if self.user is not None:
            return {"user": self.user, "pass": self.password or ""}
        if self.token is not None:
            return {"auth_token": self.token}
        return {}

    def nats_py_options(self) -> dict[str, Any]:
        """The same settings as nats-py ``connect`` keyword arguments."""
        options: dict[str, Any] = {"servers": [server.url for server in self.servers]}
        if self.creds_file is not None:
            options["user_credentials"] = str(self.creds_file)
        elif self.nkey_seed is not None:
            options["nkeys_seed_str"] = self.nkey_seed
        elif self.user is not None:
            options["user"], options["password"] = self.user, self.password or ""
        elif self.token is not None:
            options["token"] = self.token
        context = self.ssl_context()
        if context is not None:
            options["tls"] = context
            if self.tls.server_name:
                options["tls_hostname"] = self.tls.server_name
            if self.tls.handshake_first:
                options["tls_handshake_first"] = True
        return options


ROLE_CREDENTIALS = ("CREDS", "NKEY", "USER", "PASSWORD", "TOKEN")


def role_variable(role: str, credential: str) -> str:
    """``SSMD_ARCHIVER_NATS_NKEY`` for (``archiver``, ``NKEY``): a role's own ``NATS_*`` variable."""
    return f"SSMD_{role.upper().replace('-', '_')}_NATS_{credential}"


def as_settings(target: str | NatsSettings) -> NatsSettings:
    """A client's ``url`` argument: settings as given, or a URL list with credentials and TLS from the
    ``NATS_*`` variables (so every client started from a plain URL still authenticates)."""
    if isinstance(target, NatsSettings):
        return target
    return NatsSettings.from_sources(url=target)


def discovered_servers(known: list[NatsServerAddress], connect_urls: object) -> list[NatsServerAddress]:
    """The servers of a cluster's ``INFO`` ``connect_urls`` (``host:port`` strings) not in ``known``, as
    addresses with the first known server's scheme, whose TLS certificates are checked against that
    server's name (the announced entries are bare addresses)."""
    if not known or not isinstance(connect_urls, list):
        return []
    seen = {(address.host, address.port) for address in known}
    scheme, tls_name = known[0].scheme, known[0].tls_name or known[0].host
    found = []
    for url in connect_urls:
        if not isinstance(url, str):
            continue
        host, _, port = url.rpartition(":")
        host = host.strip("[]")
        if not host or not port.isdigit() or (host, int(port)) in seen:
            continue
        seen.add((host, int(port)))
        found.append(NatsServerAddress(scheme, host, int(port), tls_name))
    return found


def _path(value: str | None) -> Path | None:
    return Path(value).expanduser() if value else None


def _read_seed(value: str, variable: str = "NATS_NKEY") -> str:
    """``NATS_NKEY`` holds a seed (``SU…``) or names a file holding one."""
    text = value.strip()
    if not (text.startswith("S") and len(text) == 58 and text.isalnum()):
        try:
            text = Path(text).expanduser().read_text().strip()
        except OSError as exc:
            raise NatsSettingsError(
                f"cannot read the NATS nkey seed file named by {variable}: {exc.strerror}") from None
    register_secret(text)
    return text
