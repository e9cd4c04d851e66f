"""Standard Webhooks signatures (https://www.standardwebhooks.com/).

Every request voxd sends to an integrator (custom HTTP functions now, event webhooks
later) carries ``webhook-id``, ``webhook-timestamp`` and ``webhook-signature``; the
signature is ``v1,<base64 HMAC-SHA256 of "id.timestamp.body">`` keyed with the
secret's bytes. Secrets are written ``whsec_<base64>``. Any Standard Webhooks
verifier (the ``standardwebhooks`` package, Svix libraries) accepts these requests.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path

PREFIX = "whsec_"
TOLERANCE_S = 300


class SigningError(ValueError):
    """A secret that is not ``whsec_<base64>``, or a signature that does not verify."""


def new_secret(nbytes: int = 32) -> str:
    return PREFIX + base64.b64encode(secrets.token_bytes(nbytes)).decode()


def secret_bytes(secret: str) -> bytes:
    raw = secret[len(PREFIX):] if secret.startswith(PREFIX) else secret
    try:
        key = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise SigningError("signing secret must be 'whsec_' followed by base64") from None
    if len(key) < 16:
        raise SigningError("signing secret must hold at least 16 bytes")
    return key


def new_message_id() -> str:
    return "msg_" + secrets.token_urlsafe(18)


def signature(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    mac = hmac.new(secret_bytes(secret), f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256)
    return "v1," + base64.b64encode(mac.digest()).decode()


@dataclass(frozen=True)
class Signer:
    """Adds the three Standard Webhooks headers to an outgoing request body."""

    secret: str

    def __post_init__(self) -> None:
        secret_bytes(self.secret)  # fail at configuration time, not on the first request

    def headers(self, body: bytes, *, msg_id: str | None = None, timestamp: int | None = None) -> dict[str, str]:
        mid = msg_id or new_message_id()
        ts = int(time.time()) if timestamp is None else timestamp
        return {
            "webhook-id": mid,
            "webhook-timestamp": str(ts),
            "webhook-signature": signature(self.secret, mid, ts, body),
        }


def verify(secret: str, body: bytes, headers: dict[str, str], *, now: float | None = None) -> None:
    """Check a request as an integrator would; raises SigningError. Used by voxd's tests
    and by anyone receiving voxd's requests in Python without the standardwebhooks package."""
    h = {k.lower(): v for k, v in headers.items()}
    mid, ts, sigs = h.get("webhook-id"), h.get("webhook-timestamp"), h.get("webhook-signature")
    if not (mid and ts and sigs):
        raise SigningError("missing webhook-id, webhook-timestamp or webhook-signature")
    try:
        stamp = int(ts)
    except ValueError:
        raise SigningError("webhook-timestamp is not an integer") from None
    if abs((time.time() if now is None else now) - stamp) > TOLERANCE_S:
        raise SigningError("webhook-timestamp is outside the tolerance")
    expected = signature(secret, mid, stamp, body)
    if not any(hmac.compare_digest(expected, s) for s in sigs.split(" ")):
        raise SigningError("no matching signature")


def load_or_create_secret(path: Path) -> str:
    """The daemon's signing secret, created (mode 0600) on first use."""
    if path.exists():
        value = path.read_text(encoding="utf-8").strip()
        secret_bytes(value)
        return value
    path.parent.mkdir(parents=True, exist_ok=True)
    value = new_secret()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(value + "\n")
    return value
