"""A user's second factor: a TOTP secret (RFC 6238, 30 s steps, 6 digits, SHA-1 as every
authenticator app speaks it) kept sealed with the daemon's secrets key, because the daemon
must read it to check codes.

Enrolment is two steps: ``enroll`` stores a fresh, unconfirmed secret and returns it (shown
once, as an ``otpauth://`` URI for a QR code); ``confirm`` with a right code switches it on.
A code is accepted one step either side of now (clock drift) and only once: the step it
matched is remembered, and a code of that step or an earlier one is refused, so a code seen
over a shoulder cannot be replayed.
"""

from __future__ import annotations

import hmac
import time

import pyotp

from voxd.core.sealing import Sealer
from voxd.store.base import SqlStore

STEP_S = 30
DRIFT_STEPS = 1
ISSUER = "voxd"


def matching_step(secret: str, code: str, now: float) -> int | None:
    """The time step within ``DRIFT_STEPS`` of ``now`` whose code is ``code``, else None."""
    if not (code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret, interval=STEP_S)
    here = totp.timecode(now)
    found = None
    for step in range(here - DRIFT_STEPS, here + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code):  # look at every step: same time either way
            found = step
    return found


class TotpRepository:
    def __init__(self, db: SqlStore, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    def _where(self, user_id: str) -> str:
        return f"totp:{user_id}"

    async def enroll(self, user_id: str, email: str) -> str:
        """A new secret for ``user_id`` (replacing an unconfirmed one) as an ``otpauth://`` URI.
        Refused (``ValueError``) while a confirmed one exists: disable that first."""
        secret = pyotp.random_base32()
        sealed = self._sealer.seal(secret, self._where(user_id))
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT confirmed_at FROM user_totp WHERE user_id = ?", (user_id,))
            if row is not None and row["confirmed_at"] is not None:
                raise ValueError("a second factor is set up already; disable it first")
            await conn.execute("INSERT INTO user_totp (user_id, secret, created_at) VALUES (?, ?, ?) "
                               "ON CONFLICT (user_id) DO UPDATE SET secret = excluded.secret, "
                               "created_at = excluded.created_at, confirmed_at = NULL, last_step = 0",
                               (user_id, sealed, time.time()))
        return pyotp.TOTP(secret, interval=STEP_S).provisioning_uri(name=email, issuer_name=ISSUER)

    async def enabled(self, user_id: str) -> bool:
        row = await self._db.fetchone("SELECT confirmed_at FROM user_totp WHERE user_id = ?", (user_id,))
        return row is not None and row["confirmed_at"] is not None

    async def check(self, user_id: str, code: str, now: float | None = None, *, confirming: bool = False) -> bool:
        """Whether ``code`` is right and unused for the user's secret (confirmed, or the
        pending one when ``confirming``); a right code is used up."""
        now = time.time() if now is None else now
        row = await self._db.fetchone("SELECT * FROM user_totp WHERE user_id = ?", (user_id,))
        if row is None or (row["confirmed_at"] is None) != confirming:
            return False
        step = matching_step(self._sealer.open(row["secret"], self._where(user_id)), code, now)
        if step is None or step <= row["last_step"]:
            return False
        async with self._db.transaction() as conn:  # the step moves forward once: a racing replay loses
            return await conn.execute(
                "UPDATE user_totp SET last_step = ?, confirmed_at = COALESCE(confirmed_at, ?) "
                "WHERE user_id = ? AND last_step < ?", (step, now, user_id, step)) == 1

    async def disable(self, user_id: str) -> bool:
        async with self._db.transaction() as conn:
            return await conn.execute("DELETE FROM user_totp WHERE user_id = ?", (user_id,)) == 1
