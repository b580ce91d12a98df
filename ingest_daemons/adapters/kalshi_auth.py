"""Kalshi request signing (protocols reference A2): RSA-PSS SHA-256 over ``timestamp_ms + METHOD + path``.

The key id and the key material are secrets: the id is registered with the log redactor as soon
as it is loaded, and no error raised here ever contains either.
"""

from __future__ import annotations

import base64
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingest_daemons.errors import AuthError
from ingest_daemons.logs import register_secret

WS_SIGN_PATH = "/trade-api/ws/v2"
KEY_ID_ENV = "KALSHI_API_KEY"
KEY_PATH_ENV = "KALSHI_PRIVATE_KEY_PATH"


@dataclass(frozen=True)
class KalshiCredentials:
    key_id: str = field(repr=False)
    private_key: rsa.RSAPrivateKey = field(repr=False)

    def __repr__(self) -> str:
        return "KalshiCredentials(key_id=[REDACTED], private_key=[REDACTED])"


def load_private_key(pem: bytes) -> rsa.RSAPrivateKey:
    """PKCS#8 (``BEGIN PRIVATE KEY``) or PKCS#1 (``BEGIN RSA PRIVATE KEY``) PEM, unencrypted."""
    try:
        key = serialization.load_pem_private_key(pem, password=None)
    except (ValueError, TypeError) as exc:
        # Never include the PEM or the library message (it can quote key bytes).
        raise AuthError("Kalshi private key is not a readable unencrypted PEM RSA key (PKCS#1 or PKCS#8)") from exc
    if not isinstance(key, rsa.RSAPrivateKey):
        raise AuthError("Kalshi private key must be an RSA key")
    return key


def load_credentials(key_id: str | None = None, key_path: str | os.PathLike[str] | None = None) -> KalshiCredentials:
    """From arguments, else ``KALSHI_API_KEY`` / ``KALSHI_PRIVATE_KEY_PATH``."""
    key_id = key_id or os.environ.get(KEY_ID_ENV)
    path = key_path or os.environ.get(KEY_PATH_ENV)
    if not key_id:
        raise AuthError(f"no Kalshi API key id: set {KEY_ID_ENV}")
    register_secret(key_id)
    if not path:
        raise AuthError(f"no Kalshi private key: set {KEY_PATH_ENV} to the PEM file's path")
    try:
        pem = Path(path).read_bytes()
    except OSError as exc:
        raise AuthError(f"cannot read the Kalshi private key file {path}: {exc.strerror}") from None
    return KalshiCredentials(key_id, load_private_key(pem))


def sign(private_key: rsa.RSAPrivateKey, message: str) -> str:
    signature = private_key.sign(
        message.encode("utf-8"),
        padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=padding.PSS.DIGEST_LENGTH),
        hashes.SHA256(),
    )
    return base64.b64encode(signature).decode("ascii")


def auth_headers(
    credentials: KalshiCredentials, method: str = "GET", path: str = WS_SIGN_PATH, now_ms: int | None = None
) -> dict[str, str]:
    """Fresh headers; ``path`` is the full API path without the query string (A2 gotchas)."""
    timestamp = str(now_ms if now_ms is not None else int(time.time() * 1000))
    path = path.split("?", 1)[0]
    return {
        "KALSHI-ACCESS-KEY": credentials.key_id,
        "KALSHI-ACCESS-TIMESTAMP": timestamp,
        "KALSHI-ACCESS-SIGNATURE": sign(credentials.private_key, timestamp + method.upper() + path),
    }
