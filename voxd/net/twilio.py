"""Twilio Media Streams: telephony platforms that stream a call over a websocket.

    POST /twiml/<agent>     TwiML <Connect><Stream> pointing at the websocket below
    GET  /media/twilio      (websocket) the Media Streams protocol

The protocol is `voxd.net.serializers.twilio.TwilioSerializer`, run by the one
websocket leg (`voxd.net.ws_leg`); this module owns what is Twilio's own: the TwiML
document, X-Twilio-Signature, and the one-use stream token it hands the stream.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from xml.sax.saxutils import quoteattr

from aiohttp import web

from voxd.agents.catalog import AgentCatalog
from voxd.call.manager import CallManager
from voxd.config import TwilioConfig
from voxd.core.egress import EgressPolicy
from voxd.net.clock import MediaClock
from voxd.net.leg import LegEnv
from voxd.net.serializers.base import StreamStart
from voxd.net.serializers.twilio import TwilioSerializer
from voxd.net.twilio_rest import DEFAULT_API, CallUpdater
from voxd.net.webtoken import WEB_TOKENS_KEY, InvalidToken, twilio_signature
from voxd.net.ws_leg import WsWire, serve_stream

PATH = "/media/twilio"
PUBLIC_URL_ENV = "VOXD_PUBLIC_URL"  # overrides http.public_url
STREAM_TOKEN_TTL_S = 60.0


@dataclass(frozen=True)
class TwilioSettings:
    """With the account's auth token set, /twiml checks X-Twilio-Signature and puts a one-use
    web token in the stream's parameters; /media/twilio refuses streams without one.
    public_url: scheme://host as Twilio reaches us (behind a proxy); "" = from the request."""

    auth_token: str = field(default="", repr=False)
    public_url: str = ""
    api_base_url: str = DEFAULT_API  # Twilio's REST API (transfer_call's call update)
    policy: EgressPolicy | None = None  # where that update may go (None: public hosts only)

    @classmethod
    def from_config(cls, cfg: TwilioConfig | None = None, public_url: str | None = None,
                    policy: EgressPolicy | None = None) -> TwilioSettings:
        cfg = cfg or TwilioConfig()
        base = os.environ.get(PUBLIC_URL_ENV, "") or public_url or ""
        return cls(auth_token=cfg.auth_token(), public_url=base.rstrip("/"), api_base_url=cfg.api_base_url,
                   policy=policy)


def setup_twilio(
    app: web.Application,
    agents: AgentCatalog,
    calls: CallManager,
    clock: MediaClock,
    accepting: Callable[[], bool] = lambda: True,
    settings: Callable[[], TwilioSettings] | None = None,
    open_to_anonymous: Callable[[], bool] = lambda: False,
) -> None:
    """`settings` is asked per request (the daemon passes its live config). Streams need
    the token the daemon's TwiML minted (with the auth token set), or an open listener
    (`open_to_anonymous`: loopback only), where they count as unauthenticated calls."""
    current = settings or (lambda: TwilioSettings.from_config())

    env = LegEnv(calls, clock, agents, accepting)

    def check(request: web.Request, start: StreamStart, agent: str) -> str | None:
        if current().auth_token:
            return _stream_token_problem(request, start.parameters.get("token", ""), agent)
        return None

    async def media(request: web.Request) -> web.StreamResponse:
        if not accepting():
            raise web.HTTPServiceUnavailable(text="draining: not accepting new calls", headers={"Retry-After": "30"})
        authenticated = bool(current().auth_token)
        if not authenticated and not open_to_anonymous():
            raise web.HTTPUnauthorized(text="set the Twilio auth token (twilio.auth_token_env) so streams carry "
                                            "a signed token, or http.media_unauthenticated on a loopback listener")
        return await serve_stream(request, env, TwilioSerializer(), check=check, authenticated=authenticated,
                                  on_start=call_control)

    def call_control(wire: WsWire, start: StreamStart) -> None:
        """With the auth token, transfer_call updates the call through Twilio's REST API."""
        s = current()
        wire.updater = CallUpdater.for_stream(str(start.metadata.get("account_sid", "")),
                                              str(start.metadata.get("call_sid", "")),
                                              s.auth_token, s.api_base_url, s.policy)

    async def twiml(request: web.Request) -> web.Response:
        name = request.match_info["agent"]
        if agents.get(name) is None:
            raise web.HTTPNotFound(text=f"no agent {name!r}")
        form = await request.post() if request.method == "POST" and request.can_read_body else {}
        conf = current()
        auth = conf.auth_token
        params = {"agent": name}
        if auth:  # only Twilio may fetch this document, and the stream it names needs its token
            url = _public_url(request, conf.public_url, "https", "http") + request.path_qs
            fields = {k: v for k, v in form.items() if isinstance(v, str)}
            if not hmac.compare_digest(request.headers.get("X-Twilio-Signature", ""), twilio_signature(auth, url, fields)):
                raise web.HTTPForbidden(text="X-Twilio-Signature does not match")
            tokens = request.app.get(WEB_TOKENS_KEY)
            if tokens is None:
                raise web.HTTPServiceUnavailable(text="no web token issuer configured")
            params["token"] = tokens.mint(name, ttl_s=STREAM_TOKEN_TTL_S)[0]
        for form_field, key in (("From", "from"), ("To", "to")):
            value = form.get(form_field)
            if isinstance(value, str) and value:
                params[key] = value
        stream_url = _public_url(request, conf.public_url, "wss", "ws") + PATH
        inner = "".join(f"<Parameter name={quoteattr(k)} value={quoteattr(v)}/>" for k, v in params.items())
        xml = ('<?xml version="1.0" encoding="UTF-8"?>'
               f"<Response><Connect><Stream url={quoteattr(stream_url)}>{inner}</Stream></Connect></Response>")
        return web.Response(text=xml, content_type="text/xml")

    app.router.add_get(PATH, media)
    app.router.add_post("/twiml/{agent}", twiml)
    app.router.add_get("/twiml/{agent}", twiml)


def _public_url(request: web.Request, base: str, secure: str, plain: str) -> str:
    """scheme://host as callers see it: the configured public URL, else the request (honouring
    a proxy's X-Forwarded-Proto/Host). `secure`/`plain` name the scheme for https/http."""
    if base:
        scheme, _, host = base.partition("://")
    else:
        scheme = request.headers.get("X-Forwarded-Proto", request.scheme).split(",")[0].strip()
        host = request.headers.get("X-Forwarded-Host", request.host).split(",")[0].strip()
    return (secure if scheme == "https" else plain) + "://" + host


def _stream_token_problem(request: web.Request, token: str, agent: str) -> str | None:
    tokens = request.app.get(WEB_TOKENS_KEY)
    if tokens is None:
        return "no web token issuer configured"
    try:
        tokens.verify(token, agent)
    except InvalidToken as e:
        return f"stream token: {e}"
    return None
