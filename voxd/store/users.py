"""People who sign in: email + argon2id password, a role per organisation, lockout after
repeated failures, and single-use invitation / password-reset tokens stored hashed.

Users are global (one email, one password); what a user may see is decided by their
``memberships``: a role in an organisation. Hashing runs in a worker thread: argon2id is
deliberately slow and must not stall the event loop.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
import uuid
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

from voxd.store.base import SqlStore
from voxd.store.records import User, UserExists, normal_email

__all__ = ["ROLES", "User", "UserExists", "UserRepository", "normal_email", "token_hash"]

ROLES = ("owner", "admin", "developer", "viewer")
MAX_FAILED_LOGINS = 5
LOCKOUT_S = 900.0
TOKEN_KINDS = ("invite", "reset")
_HASHER = PasswordHasher()  # argon2id, the library's RFC 9106 low-memory profile
# a hash to verify against when the email is unknown, so both paths cost the same
_DUMMY = _HASHER.hash(secrets.token_urlsafe(16))




def token_hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def _user(row: Any) -> User:
    return User(id=row["id"], email=row["email"], created_at=row["created_at"], failed_logins=row["failed_logins"],
                locked_until=row["locked_until"], disabled_at=row["disabled_at"],
                has_password=row["password_hash"] is not None)


class UserRepository:
    def __init__(self, db: SqlStore) -> None:
        self._db = db

    async def create(self, email: str, password: str | None) -> User:
        email = normal_email(email)
        hashed = None if password is None else await asyncio.to_thread(_HASHER.hash, password)
        uid = "usr_" + uuid.uuid4().hex[:16]
        try:
            async with self._db.transaction() as conn:
                await conn.execute("INSERT INTO users (id, email, password_hash, created_at) VALUES (?, ?, ?, ?)",
                                   (uid, email, hashed, time.time()))
        except self._db.integrity_errors as e:
            raise UserExists(f"a user with email {email!r} exists already") from e
        got = await self.get(uid)
        assert got is not None
        return got

    async def get(self, user_id: str) -> User | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE id = ?", (user_id,))
        return _user(row) if row else None

    async def by_email(self, email: str) -> User | None:
        row = await self._db.fetchone("SELECT * FROM users WHERE email = ?", (email.strip().lower(),))
        return _user(row) if row else None

    async def set_password(self, user_id: str, password: str) -> None:
        hashed = await asyncio.to_thread(_HASHER.hash, password)
        async with self._db.transaction() as conn:
            await conn.execute("UPDATE users SET password_hash = ?, failed_logins = 0, locked_until = NULL "
                               "WHERE id = ?", (hashed, user_id))

    async def check_password(self, email: str, password: str, now: float | None = None) -> tuple[User | None, str]:
        """(the user, "") when the password is right; (user or None, why) otherwise: ``unknown``,
        ``locked``, ``disabled`` or ``wrong``. The ``MAX_FAILED_LOGINS``-th wrong password in a
        row locks the account for ``LOCKOUT_S``; a right one while locked is refused too. A right
        password does not clear the count: ``note_success`` does, once every factor passed."""
        now = time.time() if now is None else now
        row = await self._db.fetchone("SELECT * FROM users WHERE email = ?", (email.strip().lower(),))
        stored = row["password_hash"] if row is not None else None
        ok = await asyncio.to_thread(_verify, stored or _DUMMY, password)
        if row is None or stored is None:
            return None, "unknown"
        user = _user(row)
        if user.disabled_at is not None:
            return user, "disabled"
        if user.locked(now):
            return user, "locked"
        if not ok:
            await self.note_failure(user.id, now)
            return user, "wrong"
        if _HASHER.check_needs_rehash(stored):
            await self.set_password(user.id, password)
        return user, ""

    async def note_success(self, user_id: str) -> None:
        """Every factor was right: the failure count starts again. (Not on the password alone,
        or a thief with the password could guess second-factor codes without ever locking.)"""
        async with self._db.transaction() as conn:
            await conn.execute("UPDATE users SET failed_logins = 0, locked_until = NULL WHERE id = ?", (user_id,))

    async def note_failure(self, user_id: str, now: float | None = None) -> None:
        """One more failed sign-in (a wrong password or second-factor code) towards the lockout."""
        now = time.time() if now is None else now
        async with self._db.transaction() as conn:
            await conn.lock("users:" + user_id)  # two nodes counting one user's failures: both count
            row = await conn.fetchone("SELECT failed_logins FROM users WHERE id = ?", (user_id,))
            if row is None:
                return
            fails = row["failed_logins"] + 1
            locked = now + LOCKOUT_S if fails >= MAX_FAILED_LOGINS else None
            await conn.execute("UPDATE users SET failed_logins = ?, locked_until = ? WHERE id = ?",
                               (0 if locked else fails, locked, user_id))

    # -- roles
    async def set_role(self, user_id: str, org: str, role: str) -> None:
        if role not in ROLES:
            raise ValueError(f"role must be one of {', '.join(ROLES)}")
        async with self._db.transaction() as conn:
            await conn.execute("INSERT INTO memberships (user_id, org, role, created_at) VALUES (?, ?, ?, ?) "
                               "ON CONFLICT (user_id, org) DO UPDATE SET role = excluded.role",
                               (user_id, org, role, time.time()))

    async def role(self, user_id: str, org: str) -> str | None:
        row = await self._db.fetchone("SELECT role FROM memberships WHERE user_id = ? AND org = ?", (user_id, org))
        return str(row["role"]) if row else None

    async def memberships(self, user_id: str) -> list[tuple[str, str]]:
        rows = await self._db.fetchall("SELECT org, role FROM memberships WHERE user_id = ? ORDER BY org", (user_id,))
        return [(r["org"], r["role"]) for r in rows]

    async def list(self, org: str | None = None) -> list[dict[str, Any]]:
        """Users with their role in ``org`` (every membership when None)."""
        sql = ("SELECT u.id, u.email, u.created_at, u.locked_until, m.org, m.role FROM users u "
               "JOIN memberships m ON m.user_id = u.id")
        rows = await self._db.fetchall(sql + (" WHERE m.org = ?" if org else "") + " ORDER BY m.org, u.email",
                                       (org,) if org else ())
        return [dict(r) for r in rows]

    # -- invitation and reset tokens
    async def issue_token(self, kind: str, org: str, email: str, *, role: str | None, created_by: str,
                          ttl_s: float = 7 * 86400) -> str:
        """A single-use token (shown once; only its SHA-256 is stored)."""
        if kind not in TOKEN_KINDS:
            raise ValueError(f"kind must be one of {TOKEN_KINDS}")
        raw = f"vx_{kind}_" + secrets.token_urlsafe(32)
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO user_tokens (hash, kind, org, email, role, created_by, created_at, expires_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash(raw), kind, org, normal_email(email), role, created_by, now, now + ttl_s))
        return raw

    async def consume_token(self, kind: str, raw: str, now: float | None = None) -> dict[str, Any] | None:
        """The token's row, marked used in the same transaction; None when unknown, of another
        kind, expired or used already."""
        now = time.time() if now is None else now
        async with self._db.transaction() as conn:
            await conn.lock("user_tokens:" + token_hash(raw))  # two nodes consuming one token: one wins
            row = await conn.fetchone("SELECT * FROM user_tokens WHERE hash = ? AND kind = ?", (token_hash(raw), kind))
            if row is None or row["used_at"] is not None or row["expires_at"] <= now:
                return None
            await conn.execute("UPDATE user_tokens SET used_at = ? WHERE hash = ?", (now, row["hash"]))
        return dict(row)


def _verify(stored: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
