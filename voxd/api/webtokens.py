"""`POST /api/v1/calls/web-token`: a short-lived token for one agent's browser call, so a
public web page never holds an API key. The daemon provides the minting function
(WebRTC's token store) under `WEB_TOKEN_MINT`; without it the route answers 501. The
token carries the caller's organisation: it reaches that organisation's agent only."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web
from pydantic import BaseModel, Field

from voxd.api.models import NAME_PATTERN, Request
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotSupported

Mint = Callable[[str, float | None, str], tuple[str, float]]  # (agent, ttl_s, org)
WEB_TOKEN_MINT: web.AppKey[Mint] = web.AppKey("voxd_web_token_mint")

routes = RouteTable()


class WebTokenRequest(Request):
    agent: str = Field(pattern=NAME_PATTERN, examples=["receptionist"])
    ttl_s: float = Field(300.0, gt=0, le=3600, description="Seconds the token stays valid (single use).")


class WebToken(BaseModel):
    token: str
    expires_at: float = Field(description="Unix seconds.")
    talk_url: str = Field(description="The playground page with the token, relative to the daemon.")


@routes.route("POST", "/api/v1/calls/web-token", scope="calls:write", tag="calls", limit_class="write",
              summary="Mint a browser call token for one agent", body=WebTokenRequest, response=WebToken,
              status=201, problems=("not-found", "not-implemented"),
              description="Give the token to a web page; it calls `POST /webrtc/offer` with it. "
              "Single use, valid for `ttl_s` seconds, only for the named agent.")
async def mint_web_token(ctx: Ctx) -> Reply:
    body: WebTokenRequest = ctx.body
    await ctx.services.deps.agents.get(body.agent)  # NotFound for an agent the caller's organisation lacks
    mint = ctx.request.app.get(WEB_TOKEN_MINT)
    if mint is None:
        raise NotSupported("browser calls (WebRTC) are not enabled in this daemon")
    token, expires_at = mint(body.agent, body.ttl_s, ctx.org)
    return Reply(WebToken(token=token, expires_at=expires_at, talk_url=f"/talk/{body.agent}?token={token}"), status=201)


__all__ = ["WEB_TOKEN_MINT", "routes"]
