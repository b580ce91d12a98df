"""NATS nkeys: Ed25519 keys in NATS's base32 text form, for signing the server's ``INFO`` nonce.

Why not the ``nkeys`` package: it pulls in another crypto library for what ``cryptography`` (already a
dependency) does, and the encoding is small: a key is ``base32(prefix bytes + raw key + CRC-16)``
without padding. A user seed starts ``SU``, its public key ``U``; an account's ``A``, an operator's
``O`` (the prefixes are in nats-io/nkeys ``strkey.go``).
"""

from __future__ import annotations

import base64
import binascii

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from ingest_daemons.errors import SsmdError

PREFIX_SEED = 18 << 3  # "S"
PREFIX_OPERATOR = 14 << 3  # "O"
PREFIX_ACCOUNT = 0  # "A"
PREFIX_USER = 20 << 3  # "U"
_PUBLIC_PREFIXES = {PREFIX_OPERATOR, PREFIX_ACCOUNT, PREFIX_USER}


class NkeyError(SsmdError):
    """A seed that is not a valid nkey seed (the message never contains the seed)."""


def _crc16(data: bytes) -> int:
    """CRC-16/XMODEM, as nkeys checksums its keys."""
    return binascii.crc_hqx(data, 0)


def _encode(raw: bytes) -> str:
    checksum = _crc16(raw).to_bytes(2, "little")
    return base64.b32encode(raw + checksum).decode().rstrip("=")


def _decode(text: str) -> bytes:
    padded = text.strip() + "=" * (-len(text.strip()) % 8)
    try:
        raw = base64.b32decode(padded)
    except (binascii.Error, ValueError) as exc:
        raise NkeyError("not an nkey (bad base32)") from exc
    if len(raw) < 4:
        raise NkeyError("not an nkey (too short)")
    body, checksum = raw[:-2], raw[-2:]
    if _crc16(body).to_bytes(2, "little") != checksum:
        raise NkeyError("not an nkey (checksum mismatch)")
    return body


class KeyPair:
    """An nkey seed: signs nonces and tells its public key."""

    def __init__(self, seed: str) -> None:
        body = _decode(seed)
        # two prefix bytes: 5 bits "seed", 5 bits the key's type, 6 bits padding
        if len(body) != 34 or (body[0] & 0xF8) != PREFIX_SEED:
            raise NkeyError("not an nkey seed")
        self.public_prefix = ((body[0] & 0x07) << 5) | ((body[1] & 0xF8) >> 3)
        if self.public_prefix not in _PUBLIC_PREFIXES:
            raise NkeyError("nkey seed of an unknown key type")
        self._key = Ed25519PrivateKey.from_private_bytes(body[2:])

    @property
    def public_key(self) -> str:
        raw = self._key.public_key().public_bytes_raw()
        return _encode(bytes([self.public_prefix]) + raw)

    def sign(self, data: bytes) -> bytes:
        return self._key.sign(data)

    def sign_nonce(self, nonce: str) -> str:
        """The ``sig`` field of ``CONNECT``: the raw Ed25519 signature, base64url without padding."""
        return base64.urlsafe_b64encode(self.sign(nonce.encode())).decode().rstrip("=")


def encode_seed(raw_seed: bytes, public_prefix: int = PREFIX_USER) -> str:
    """The text seed for 32 raw Ed25519 seed bytes (used to create users for tests and ``ssmd nats``)."""
    if len(raw_seed) != 32:
        raise NkeyError("an Ed25519 seed has 32 bytes")
    first = PREFIX_SEED | (public_prefix >> 5)
    second = (public_prefix & 0x1F) << 3
    return _encode(bytes([first, second]) + raw_seed)


def create_user_seed() -> str:
    """A fresh user nkey seed (``SU…``)."""
    raw = Ed25519PrivateKey.generate().private_bytes_raw()
    return encode_seed(raw, PREFIX_USER)
