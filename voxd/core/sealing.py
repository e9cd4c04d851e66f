"""Secrets the daemon must keep readable (webhook signing secrets: it signs with them) are
stored sealed: AES-256-GCM under a key that is not in the database.

The key is ``$VOXD_SECRETS_KEY`` (32 bytes, base64) when set, else ``secrets.key`` in the
state folder (created 0600 on first use). A sealed value is ``sealed:v1:`` + base64 of
nonce and ciphertext, bound to what it belongs to (e.g. ``webhook:wh_…``) as associated
data, so a value copied into another row does not open. A copy of the database alone
gives no secret; keep the key out of database backups (or in a systemd credential).
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

KEY_ENV = "VOXD_SECRETS_KEY"
KEY_FILE = "secrets.key"
PREFIX = "sealed:v1:"
NONCE = 12


class SealError(ValueError):
    """A sealed value cannot be opened: another key, or a damaged value."""


class Sealer:
    def __init__(self, key: bytes, where: str = "") -> None:
        if len(key) != 32:
            raise SealError("the secrets key must be 32 bytes")
        self._aead = AESGCM(key)
        self.where = where  # where the key came from, for error messages (never the key)

    @classmethod
    def load(cls, state_dir: Path) -> Sealer:
        """$VOXD_SECRETS_KEY, else <state_dir>/secrets.key (created 0600 if missing)."""
        env = os.environ.get(KEY_ENV, "")
        if env:
            try:
                return cls(base64.b64decode(env, validate=True), f"${KEY_ENV}")
            except (binascii.Error, ValueError):
                raise SealError(f"${KEY_ENV} must be 32 bytes in base64") from None
        path = state_dir / KEY_FILE
        try:
            key = path.read_bytes()
        except FileNotFoundError:
            key = secrets.token_bytes(32)
            state_dir.mkdir(parents=True, exist_ok=True)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first
                key = path.read_bytes()
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(key)
        return cls(key, str(path))

    @classmethod
    def ephemeral(cls) -> Sealer:
        """A key that lives as long as the process (an in-memory database's secrets)."""
        return cls(secrets.token_bytes(32), "this process")

    @staticmethod
    def is_sealed(value: str) -> bool:
        return value.startswith(PREFIX)

    def seal(self, plain: str, context: str) -> str:
        nonce = secrets.token_bytes(NONCE)
        box = self._aead.encrypt(nonce, plain.encode(), context.encode())
        return PREFIX + base64.b64encode(nonce + box).decode("ascii")

    def open(self, value: str, context: str) -> str:
        """The plain value; a value stored before sealing existed is returned as it is."""
        if not self.is_sealed(value):
            return value
        try:
            raw = base64.b64decode(value[len(PREFIX):], validate=True)
            return self._aead.decrypt(raw[:NONCE], raw[NONCE:], context.encode()).decode()
        except (binascii.Error, ValueError, InvalidTag):
            raise SealError(f"a sealed secret ({context}) does not open with the key from {self.where}; "
                            "was the database moved without its key?") from None
