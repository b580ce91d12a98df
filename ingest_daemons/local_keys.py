"""Throw-away Kalshi credentials for the local stack: the simulator verifies what the connector signs.

Generated once under ``DATA_DIR/keys`` (private key mode 0600) and reused, so a restarted stack
keeps working; never used against a real exchange.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from ingest_daemons.private_files import write_private_file


@dataclass(frozen=True)
class LocalKalshiKeys:
    key_id: str
    private_key_path: Path
    public_key_path: Path


def ensure_local_kalshi_keys(data_dir: Path) -> LocalKalshiKeys:
    keys_dir = data_dir / "keys"
    keys_dir.mkdir(parents=True, exist_ok=True)
    private = keys_dir / "kalshi-local.pem"
    public = keys_dir / "kalshi-local.pub.pem"
    key_id_file = keys_dir / "kalshi-local.key-id"
    if not (private.exists() and public.exists() and key_id_file.exists()):
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        # 0600 from the file's creation on (private_files): no moment at which another user may open it.
        write_private_file(private, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                      serialization.NoEncryption()))
        public.write_bytes(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                         serialization.PublicFormat.SubjectPublicKeyInfo))
        key_id_file.write_text(str(uuid.uuid4()))
    return LocalKalshiKeys(key_id_file.read_text().strip(), private, public)
