"""NATS settings: servers, credentials and TLS from the YAML and the NATS_* variables (pure, no server)."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from ingest_daemons.logs import redact
from ingest_daemons.nats_nkeys import KeyPair, NkeyError, create_user_seed
from ingest_daemons.nats_settings import NatsServerAddress, NatsSettings, NatsSettingsError

# The user seed and public key of the NATS documentation's nkey example (``nk -gen user -pubout``).
KNOWN_SEED = "SUACSSL3UAHUDXKFSNVUZRF5UHPMWZ6BFDTJ7M6USDXIEDNPPQYYYCU3VY"
KNOWN_PUBLIC = "UDXU4RCSJNZOIQHZNWXHXORDPRTGNJAHAHFRGZNEEJCPQTT2M7NLCNF4"


def test_url_list_lifts_credentials_out_of_the_servers() -> None:
    settings = NatsSettings.parse("nats://bob:s3cret-pw@h1:4333, tls://h2")
    assert settings.servers == (NatsServerAddress("nats", "h1", 4333), NatsServerAddress("tls", "h2", 4222))
    assert (settings.user, settings.password, settings.auth_method) == ("bob", "s3cret-pw", "user")
    assert settings.url == "nats://h1:4333,tls://h2:4222"
    assert "s3cret-pw" not in repr(settings)
    assert NatsSettings.parse("nats://tok-abcdef@h:1").token == "tok-abcdef"
    assert NatsSettings.parse("127.0.0.1:5000").servers[0].url == "nats://127.0.0.1:5000"
    with pytest.raises(NatsSettingsError, match="scheme"):
        NatsSettings.parse("http://h:1")
    with pytest.raises(NatsSettingsError, match="no NATS server"):
        NatsSettings.parse(" , ")


def test_variables_override_the_yaml_and_secrets_are_redacted(tmp_path: Path) -> None:
    yaml = {"url": "nats://yaml:4222", "user": "yaml-user", "creds": "/yaml/creds",
            "tls": {"ca": "/yaml/ca.pem", "server_name": "nats.internal"}}
    environ = {"NATS_URL": "nats://a:1,nats://b:2", "NATS_USER": "connector", "NATS_PASSWORD": "pw-from-env-1",
               "NATS_TOKEN": "token-from-env-1", "NATS_CA": "/env/ca.pem", "NATS_CERT": "/env/c.pem",
               "NATS_KEY": "/env/k.pem", "NATS_TLS_FIRST": "true"}
    settings = NatsSettings.from_sources(yaml, environ)
    assert [s.url for s in settings.servers] == ["nats://a:1", "nats://b:2"]
    assert (settings.user, settings.password, settings.token) == ("connector", "pw-from-env-1", "token-from-env-1")
    assert settings.creds_file == Path("/yaml/creds")
    assert settings.tls.ca_file == Path("/env/ca.pem") and settings.tls.cert_file == Path("/env/c.pem")
    assert settings.tls.key_file == Path("/env/k.pem") and settings.tls.server_name == "nats.internal"
    assert settings.tls.handshake_first
    assert redact("CONNECT pw-from-env-1 token-from-env-1") == "CONNECT [REDACTED] [REDACTED]"
    assert NatsSettings.from_sources(yaml, {}).servers[0].host == "yaml"
    assert NatsSettings.from_sources(yaml, environ, url="nats://flag:9").servers[0].host == "flag"


def test_nkey_from_a_seed_file_or_the_variable_signs_the_nonce(tmp_path: Path) -> None:
    seed_file = tmp_path / "user.nk"
    seed_file.write_text(KNOWN_SEED + "\n")
    for value in (str(seed_file), KNOWN_SEED):
        settings = NatsSettings.from_sources({}, {"NATS_NKEY": value})
        auth = settings.connect_auth("nonce-123")
        assert auth["nkey"] == KNOWN_PUBLIC
        signature = base64.urlsafe_b64decode(auth["sig"] + "==")
        raw_public = base64.b32decode(KNOWN_PUBLIC + "=" * (-len(KNOWN_PUBLIC) % 8))[1:-2]
        Ed25519PublicKey.from_public_bytes(raw_public).verify(signature, b"nonce-123")  # raises if wrong
    assert KNOWN_SEED not in redact(f"seed {KNOWN_SEED}")
    with pytest.raises(NatsSettingsError, match="NATS_NKEY"):
        NatsSettings.from_sources({}, {"NATS_NKEY": str(tmp_path / "missing.nk")})
    with pytest.raises(NkeyError):
        KeyPair(KNOWN_SEED[:-2] + "AA")
    assert KeyPair(create_user_seed()).public_key.startswith("U")


def test_creds_file_gives_the_jwt_and_signs_with_its_seed(tmp_path: Path) -> None:
    creds = tmp_path / "user.creds"
    creds.write_text(
        "-----BEGIN NATS USER JWT-----\neyJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJVIn0.c2ln\n------END NATS USER JWT------\n\n"
        "************************* IMPORTANT *************************\n\n"
        f"-----BEGIN USER NKEY SEED-----\n{KNOWN_SEED}\n------END USER NKEY SEED------\n"
    )
    settings = NatsSettings.from_sources({}, {"NATS_CREDS": str(creds)})
    auth = settings.connect_auth("abc")
    assert auth["jwt"] == "eyJhbGciOiJlZDI1NTE5In0.eyJzdWIiOiJVIn0.c2ln"
    assert auth["sig"] == KeyPair(KNOWN_SEED).sign_nonce("abc")
    assert settings.nats_py_options()["user_credentials"] == str(creds)
    with pytest.raises(NatsSettingsError, match="no nonce"):
        settings.connect_auth(None)
    creds.write_text("garbage")
    with pytest.raises(NatsSettingsError, match="not a NATS creds file"):
        settings.connect_auth("abc")


def test_a_role_s_own_credentials_replace_the_common_ones_and_nothing_else(tmp_path: Path) -> None:
    tls_yaml = {"tls": {"ca": "/yaml/ca.pem"}}
    common = NatsSettings.from_sources(tls_yaml, {"NATS_URL": "tls://a:1,tls://b:2", "NATS_CREDS": "/common.creds"})
    seed = create_user_seed()  # fresh: registered for redaction by nothing but the code under test
    seed_file = tmp_path / "admin.seed"
    seed_file.write_text(seed + "\n")
    admin = common.for_role("admin", {"SSMD_ADMIN_NATS_NKEY": str(seed_file),
                                      "SSMD_ARCHIVER_NATS_USER": "archiver"})
    # the admin's nkey, and not the common creds file (which would win over an nkey if both were kept)
    assert (admin.auth_method, admin.nkey_seed, admin.creds_file) == ("nkey", seed, None)
    assert (admin.servers, admin.tls) == (common.servers, common.tls)
    assert seed not in redact(f"seed {seed}")

    archiver = common.for_role("archiver", {"SSMD_ARCHIVER_NATS_USER": "archiver",
                                            "SSMD_ARCHIVER_NATS_PASSWORD": "archiver-pw-77"})
    assert (archiver.user, archiver.password, archiver.creds_file) == ("archiver", "archiver-pw-77", None)
    assert "archiver-pw-77" not in redact("pw archiver-pw-77")
    # a role given nothing of its own keeps the process's common credentials
    assert common.for_role("admin", {"NATS_USER": "ignored-here"}) is common

    with pytest.raises(NatsSettingsError, match="named by SSMD_ADMIN_NATS_NKEY"):
        common.for_role("admin", {"SSMD_ADMIN_NATS_NKEY": str(tmp_path / "missing.seed")})
