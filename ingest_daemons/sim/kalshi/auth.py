"""Verification of Kalshi's signed WebSocket upgrade headers (protocols.md §A2).

Written from the spec, not from the connector's signer, so a misreading on either side shows up as
a 401 instead of being mirrored. Checks are strict where the spec is precise: the timestamp is
milliseconds, the signed string is ``timestamp + "GET" + path`` without query string, and the PSS
salt length must equal the digest length (32 bytes); a signer that uses ``PSS.MAX_LENGTH`` fails
here, which is the point.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from dataclasses import dataclass

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from ingest_daemons.sim.kalshi import spec

DEFAULT_MAX_CLOCK_SKEW_S = 30.0
# A millisecond timestamp for any date after 1973 has at least 12 digits; a value below this is
# almost certainly seconds, the most common signing mistake (§A2 "Common failures").
_MS_THRESHOLD = 100_000_000_000


class KeyLoadError(ValueError):
    """The configured key is not an RSA key in a PEM form the simulator understands."""


def load_public_key(pem: bytes) -> rsa.RSAPublicKey:
    """Load an RSA public key from PEM.

    Accepts SubjectPublicKeyInfo (``BEGIN PUBLIC KEY``) and PKCS#1 (``BEGIN RSA PUBLIC KEY``), and
    also a private key (PKCS#1 or PKCS#8, unencrypted) from which the public half is taken, so the
    CLI can be pointed at the same file the connector signs with.
    """
    try:
        if b"PRIVATE KEY" in pem:
            private = serialization.load_pem_private_key(pem, password=None)
            public: object = private.public_key()
        else:
            public = serialization.load_pem_public_key(pem)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise KeyLoadError(f"not a usable PEM key: {type(exc).__name__}") from None
    if not isinstance(public, rsa.RSAPublicKey):
        raise KeyLoadError("key is not RSA; Kalshi signs with RSA-PSS")
    return public


@dataclass(frozen=True, slots=True)
class AuthResult:
    """Outcome of one check; ``reason`` is safe to send to the client and to log."""

    ok: bool
    reason: str = ""


class HeaderVerifier:
    """Checks the three ``KALSHI-ACCESS-*`` headers of one upgrade request."""

    def __init__(
        self,
        public_key: rsa.RSAPublicKey,
        *,
        api_key_id: str | None = None,
        max_clock_skew_s: float = DEFAULT_MAX_CLOCK_SKEW_S,
    ) -> None:
        self._key = public_key
        self._api_key_id = api_key_id
        self._max_skew_ms = int(max_clock_skew_s * 1000)
        self._padding = padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=hashes.SHA256.digest_size)

    def verify(self, headers: Mapping[str, str], method: str, path: str, now_ms: int) -> AuthResult:
        """Verify headers for a request to ``path`` (no query string) made with ``method``.

        ``headers`` must look names up case-insensitively (aiohttp's ``CIMultiDict`` does).
        Reasons never include the signature or the key.
        """
        key = headers.get(spec.HEADER_KEY)
        ts_text = headers.get(spec.HEADER_TIMESTAMP)
        sig_text = headers.get(spec.HEADER_SIGNATURE)
        for name, value in (
            (spec.HEADER_KEY, key),
            (spec.HEADER_TIMESTAMP, ts_text),
            (spec.HEADER_SIGNATURE, sig_text),
        ):
            if not value:
                return AuthResult(False, f"missing header {name}")
        assert key is not None and ts_text is not None and sig_text is not None
        if self._api_key_id is not None and key != self._api_key_id:
            return AuthResult(False, "unknown API key id")
        if not ts_text.isdigit():
            return AuthResult(False, "timestamp must be Unix time in milliseconds (digits only)")
        ts = int(ts_text)
        if ts < _MS_THRESHOLD:
            return AuthResult(False, "timestamp looks like seconds; Kalshi wants milliseconds")
        if abs(now_ms - ts) > self._max_skew_ms:
            return AuthResult(False, f"timestamp outside allowed clock skew of {self._max_skew_ms} ms")
        try:
            signature = base64.b64decode(sig_text, validate=True)
        except (binascii.Error, ValueError):
            return AuthResult(False, "signature is not valid base64")
        message = (ts_text + method.upper() + path).encode()
        try:
            self._key.verify(signature, message, self._padding, hashes.SHA256())
        except InvalidSignature:
            return AuthResult(
                False,
                "bad signature (expected RSA-PSS SHA-256, MGF1 SHA-256, salt = digest length, "
                "over timestamp+method+path without query)",
            )
        return AuthResult(True)
