"""Who may open a websocket media call (`/media/voxd`, `/media/twilio`).

A call costs CPU like any other, so an anonymous stranger must not be able to start
one. A stream is accepted with an API key holding `calls:write` (or `admin`) or a
signed web token for its agent, sent as `Authorization: Bearer …` or `?token=…`
(browsers cannot set headers on a websocket). Twilio streams carry the one-use token
the daemon's own TwiML minted (see voxd.net.twilio). Without a credential, a stream
is accepted only where the operator opened the listener to anonymous callers
(`http.media_unauthenticated`, allowed only on a loopback-bound listener), and then
counts against the unauthenticated call caps (voxd.call.admission).

The grant names the credential's organisation (an API key's, or the one that minted
a web token): the call reaches that organisation's agent and is stored with it. An
anonymous caller is the default organisation's.

Failed attempts answer 401/403, which the failed-authentication throttle counts
(voxd.api.auth.credential_throttle covers /media/).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from aiohttp import web

from voxd.net.webtoken import ApiKeyCheck, InvalidToken, WebTokens

WEB_TOKEN_PREFIX = "vxw1."


@dataclass(frozen=True)
class Grant:
    authenticated: bool
    agent: str | None  # the agent asked for, or the one a web token names
    org: str = "default"  # whose agents the caller may reach


@dataclass
class MediaAuth:
    tokens: WebTokens | None = None
    key_check: ApiKeyCheck | None = None
    open_to_anonymous: Callable[[], bool] = lambda: False

    @staticmethod
    def credential(request: web.Request) -> str:
        header = request.headers.get("Authorization", "")
        if header[:7].lower() == "bearer ":
            return header[7:].strip()
        return request.query.get("token", "")

    async def authorize(self, request: web.Request, agent: str | None) -> Grant:
        """Who is calling: a credential holder (a web token also names the agent) or an
        anonymous caller on an open listener; raises 401 (none given) or 403 (a wrong one)."""
        raw = self.credential(request)
        if not raw:
            if self.open_to_anonymous():
                return Grant(authenticated=False, agent=agent)
            raise web.HTTPUnauthorized(
                text="send an API key with calls:write or a web token (Authorization: Bearer …, or ?token=…)",
                headers={"WWW-Authenticate": 'Bearer realm="voxd"'})
        if raw.startswith(WEB_TOKEN_PREFIX) and self.tokens is not None:
            try:
                claims = self.tokens.verify(raw, agent)
            except InvalidToken as e:
                raise web.HTTPForbidden(text=str(e)) from None
            return Grant(authenticated=True, agent=claims.agent, org=claims.org)
        org = await self.key_check(raw) if self.key_check is not None else None
        if org is not None:
            return Grant(authenticated=True, agent=agent, org=org)
        raise web.HTTPForbidden(text="invalid web token or API key")
