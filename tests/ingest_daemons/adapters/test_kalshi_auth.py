from __future__ import annotations

import base64
import logging
from pathlib import Path

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from ingest_daemons.adapters.kalshi_auth import auth_headers, load_credentials
from ingest_daemons.errors import AuthError
from ingest_daemons.logs import KeyValueFormatter
from tests.fixtures.keys import KeyPair


def verify(keys: KeyPair, headers: dict[str, str], message: str) -> None:
    keys.private_key.public_key().verify(
        base64.b64decode(headers["KALSHI-ACCESS-SIGNATURE"]),
        message.encode(),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )


@pytest.mark.parametrize("form", ["pkcs8_path", "pkcs1_path"])
def test_signature_verifies_for_both_key_formats(kalshi_keys: KeyPair, form: str) -> None:
    creds = load_credentials(kalshi_keys.key_id, getattr(kalshi_keys, form))
    headers = auth_headers(creds, now_ms=1_770_000_000_123)
    assert headers["KALSHI-ACCESS-TIMESTAMP"] == "1770000000123"
    assert headers["KALSHI-ACCESS-KEY"] == kalshi_keys.key_id
    verify(kalshi_keys, headers, "1770000000123GET/trade-api/ws/v2")
    with pytest.raises(InvalidSignature):
        verify(kalshi_keys, headers, "1770000000123GET/trade-api/v2/markets")


def test_query_string_is_not_signed(kalshi_keys: KeyPair) -> None:
    creds = load_credentials(kalshi_keys.key_id, kalshi_keys.pkcs8_path)
    headers = auth_headers(creds, "get", "/trade-api/v2/markets?limit=5", now_ms=5)
    verify(kalshi_keys, headers, "5GET/trade-api/v2/markets")


def test_credentials_from_environment(kalshi_keys: KeyPair, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALSHI_API_KEY", kalshi_keys.key_id)
    monkeypatch.setenv("KALSHI_PRIVATE_KEY_PATH", str(kalshi_keys.pkcs1_path))
    creds = load_credentials()
    assert kalshi_keys.key_id not in repr(creds)


def test_bad_key_errors_leak_nothing(tmp_path: Path, kalshi_keys: KeyPair) -> None:
    garbage = tmp_path / "bad.pem"
    pem = kalshi_keys.pkcs8_path.read_text()
    garbage.write_text(pem[:200] + "corrupted" + pem[260:])
    with pytest.raises(AuthError) as info:
        load_credentials("secret-key-id-123", garbage)
    text = str(info.value) + repr(info.value.__cause__ or "")
    assert "secret-key-id-123" not in str(info.value)
    assert pem[40:80] not in text
    with pytest.raises(AuthError, match="KALSHI_PRIVATE_KEY_PATH"):
        load_credentials("secret-key-id-123", None)
    with pytest.raises(AuthError, match="cannot read"):
        load_credentials("secret-key-id-123", tmp_path / "missing.pem")


def test_loaded_key_id_is_redacted_from_logs(kalshi_keys: KeyPair) -> None:
    load_credentials(kalshi_keys.key_id, kalshi_keys.pkcs8_path)
    record = logging.LogRecord("t", logging.INFO, __file__, 1, f"connecting with {kalshi_keys.key_id}", None, None)
    record.fields = {"key": kalshi_keys.key_id}
    line = KeyValueFormatter().format(record)
    assert kalshi_keys.key_id not in line and "[REDACTED]" in line
