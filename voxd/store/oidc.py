"""Single sign-on records of one organisation: its OpenID Connect provider, and the
sign-ins under way.

The provider's client secret, when the API was given one, is stored sealed (bound to
``oidc:<org>``); a provider may instead name a secret declared in voxd.yaml
(``client_secret_name``), which is then never in the database at all.

A sign-in under way is keyed by the SHA-256 of its ``state``: it holds the nonce, the PKCE
code verifier, the redirect URI and the hash of the browser-binding value (a cookie set by
the start route), lives ``LOGIN_TTL_S`` seconds and is consumed once: a second callback
with the same state is a replay and is refused.
"""

from __future__ import annotations

import json
import time
from typing import Any

from voxd.core.sealing import Sealer
from voxd.store.base import SqlStore
from voxd.store.records import OidcLogin, OidcProvider
from voxd.store.users import token_hash

LOGIN_TTL_S = 600.0


def _provider(row: Any, secret: str | None) -> OidcProvider:
    return OidcProvider(org=row["org"], issuer=row["issuer"], client_id=row["client_id"], client_secret=secret,
                        client_secret_name=row["client_secret_name"], default_role=row["default_role"],
                        allowed_domains=tuple(json.loads(row["allowed_domains"])), redirect_uri=row["redirect_uri"],
                        updated_by=row["updated_by"], updated_at=row["updated_at"])


class OidcRepository:
    def __init__(self, db: SqlStore, sealer: Sealer) -> None:
        self._db = db
        self._sealer = sealer

    def _where(self) -> str:
        return f"oidc:{self._db.org}"

    async def get_provider(self) -> OidcProvider | None:
        row = await self._db.fetchone("SELECT * FROM oidc_providers WHERE org = ?", (self._db.org,))
        if row is None:
            return None
        secret = row["client_secret"]
        return _provider(row, None if secret is None else self._sealer.open(secret, self._where()))

    async def put_provider(self, p: OidcProvider) -> OidcProvider:
        """Create or replace the organisation's provider (``p.org`` is ignored: this store's)."""
        sealed = None if p.client_secret is None else self._sealer.seal(p.client_secret, self._where())
        now = time.time()
        async with self._db.transaction() as conn:
            await conn.execute(
                "INSERT INTO oidc_providers (org, issuer, client_id, client_secret, client_secret_name, default_role, "
                "allowed_domains, redirect_uri, updated_by, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (org) DO UPDATE SET issuer = excluded.issuer, client_id = excluded.client_id, "
                "client_secret = excluded.client_secret, client_secret_name = excluded.client_secret_name, "
                "default_role = excluded.default_role, allowed_domains = excluded.allowed_domains, "
                "redirect_uri = excluded.redirect_uri, updated_by = excluded.updated_by, updated_at = excluded.updated_at",
                (self._db.org, p.issuer, p.client_id, sealed, p.client_secret_name, p.default_role,
                 json.dumps(list(p.allowed_domains)), p.redirect_uri, p.updated_by, now))
        got = await self.get_provider()
        assert got is not None
        return got

    async def delete_provider(self) -> bool:
        async with self._db.transaction() as conn:
            gone = await conn.execute("DELETE FROM oidc_providers WHERE org = ?", (self._db.org,))
            await conn.execute("DELETE FROM oidc_logins WHERE org = ?", (self._db.org,))
            return gone == 1

    # -- sign-ins under way
    async def begin(self, state: str, binding: str, nonce: str, code_verifier: str, redirect_uri: str,
                    ttl_s: float = LOGIN_TTL_S, now: float | None = None) -> None:
        now = time.time() if now is None else now
        async with self._db.transaction() as conn:
            # stale ones are swept here, so the table stays small (used ones stay until then: a replay is named)
            await conn.execute("DELETE FROM oidc_logins WHERE expires_at <= ?", (now,))
            await conn.execute(
                "INSERT INTO oidc_logins (state_hash, org, binding_hash, nonce, code_verifier, redirect_uri, "
                "created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (token_hash(state), self._db.org, token_hash(binding), nonce, code_verifier, redirect_uri, now,
                 now + ttl_s))

    async def consume(self, state: str, now: float | None = None) -> tuple[OidcLogin | None, str]:
        """(the sign-in, "") once; else (None, why): ``unknown``, ``used`` or ``expired``. A
        used one stays until it expires, so a replay is named as one."""
        now = time.time() if now is None else now
        async with self._db.transaction() as conn:
            row = await conn.fetchone("SELECT * FROM oidc_logins WHERE state_hash = ? AND org = ?",
                                      (token_hash(state), self._db.org))
            if row is None:
                return None, "unknown"
            if row["used_at"] is not None:
                return None, "used"
            # used once even when two nodes race for it: only one update finds it unused
            if await conn.execute("UPDATE oidc_logins SET used_at = ? WHERE state_hash = ? AND used_at IS NULL",
                                  (now, row["state_hash"])) != 1:
                return None, "used"
        if row["expires_at"] <= now:
            return None, "expired"
        return OidcLogin(binding_hash=row["binding_hash"], nonce=row["nonce"], code_verifier=row["code_verifier"],
                         redirect_uri=row["redirect_uri"], created_at=row["created_at"]), ""
