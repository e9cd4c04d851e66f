"""transfer_call on a Twilio call: the call is updated through Twilio's REST API (a local
fake of the documented ``POST /2010-04-01/Accounts/{AccountSid}/Calls/{CallSid}.json``
with ``Twiml``, basic auth), which replaces the stream with a ``<Dial>``; without the auth
token the function is not offered on Twilio calls, and send_dtmf never is."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import re
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import aiohttp
import pytest
from aiohttp import web

from tests.daemons import start_daemon
from tests.net.test_twilio import Platform, _call_id, _record
from tests.synth import silence, voiced
from voxd.net.twilio_rest import CallUpdater, dial_twiml

ACCOUNT = "AC" + "a1" * 16
CALL = "CA" + "b2" * 16
TOKEN = "twilio-secret"

AGENT = """
greeting: Hello.
stt: {engine: fake, options: {transcripts: ["put me through to the front desk"]}}
llm: {engine: dialog}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 400}
tools: [transfer_call, send_dtmf]
dialog:
  intents:
    - name: desk
      examples: ["put me through to the front desk"]
      tool: transfer_call
      arguments: {target: "sip:desk@pbx.example.com"}
      reply: "Putting you through."
"""


class FakeTwilioRest:
    """Twilio's call-update endpoint as documented: form-encoded, basic auth, JSON back."""

    def __init__(self) -> None:
        self.updates: list[dict[str, Any]] = []
        self.updated = asyncio.Event()
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def start(self) -> FakeTwilioRest:
        app = web.Application()
        app.router.add_post("/2010-04-01/Accounts/{account}/Calls/{call}.json", self.update)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def update(self, request: web.Request) -> web.Response:
        account, call = request.match_info["account"], request.match_info["call"]
        expected = "Basic " + base64.b64encode(f"{account}:{TOKEN}".encode()).decode()
        if request.headers.get("Authorization") != expected:
            return web.json_response({"code": 20003, "message": "Authenticate", "status": 401}, status=401)
        form = {k: v[0] for k, v in parse_qs(await request.text()).items()}
        self.updates.append({"account": account, "call": call, **form})
        self.updated.set()
        return web.json_response({"sid": call, "account_sid": account, "status": "in-progress"})


def test_dial_twiml_and_credentials() -> None:
    assert "<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial>" in dial_twiml("sip:desk@pbx.example.com")
    assert "<Dial><Number>+15550100</Number></Dial>" in dial_twiml("+15550100")
    assert "&lt;" in dial_twiml("sip:a<b@x")
    assert CallUpdater.for_stream(ACCOUNT, CALL, "", "https://api.twilio.com", None) is None  # no token
    assert CallUpdater.for_stream("AC1", CALL, TOKEN, "https://api.twilio.com", None) is None  # not a SID
    up = CallUpdater.for_stream(ACCOUNT, CALL, TOKEN, "https://api.twilio.com/", None)
    assert up is not None and up.url == f"https://api.twilio.com/2010-04-01/Accounts/{ACCOUNT}/Calls/{CALL}.json"
    assert TOKEN not in repr(up)


async def _stream_token(http: aiohttp.ClientSession, base: str) -> str:
    form = {"CallSid": CALL, "From": "+15550007", "To": "+15550100"}
    signed = base + "/twiml/desk" + "".join(k + form[k] for k in sorted(form))
    sig = base64.b64encode(hmac.new(TOKEN.encode(), signed.encode(), hashlib.sha1).digest()).decode()
    async with http.post(base + "/twiml/desk", data=form, headers={"X-Twilio-Signature": sig}) as r:
        assert r.status == 200
        return re.search(r'name="token" value="([^"]+)"', await r.text()).group(1)  # type: ignore[union-attr]


async def _start(p: Platform, token: str | None) -> None:
    params: dict[str, str] = {"agent": "desk"}
    if token:
        params["token"] = token
    await p.ws.send_str(json.dumps({"event": "start", "streamSid": p.sid, "start": {
        "accountSid": ACCOUNT, "streamSid": p.sid, "callSid": CALL, "customParameters": params,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1}}}))


async def test_transfer_updates_the_call_through_the_rest_api(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TWILIO_AUTH_TOKEN", TOKEN)
    rest = await FakeTwilioRest().start()
    d = await start_daemon(tmp_path, {"desk": AGENT}, twilio={"api_base_url": rest.url},
                           egress={"allow": [{"networks": ["127.0.0.1/32"], "uses": ["providers"]}]})
    base = f"http://127.0.0.1:{d.http_port}"
    try:
        async with aiohttp.ClientSession() as http:
            token = await _stream_token(http, base)
            async with http.ws_connect(base + "/media/twilio") as ws:
                p = Platform(ws, "MZX1")
                await _start(p, token)
                await p.wait_for("mark")
                call_id = _call_id(d, "MZX1")
                session = d.calls.active[call_id]  # type: ignore[union-attr]
                assert session.tools.allowed == ["transfer_call"]  # send_dtmf: never on Twilio
                await p.say(silence(1.2) + voiced(0.8) + silence(0.8))
                await asyncio.wait_for(rest.updated.wait(), 10)
                await p.send("stop", stop={"accountSid": ACCOUNT, "callSid": CALL})  # Twilio ends the stream
                await asyncio.wait_for(p.reader, 5)
        (update,) = rest.updates
        assert update["account"] == ACCOUNT and update["call"] == CALL
        assert "<Dial><Sip>sip:desk@pbx.example.com</Sip></Dial>" in update["Twiml"]
        rec = await _record(d, call_id)
        assert rec["end_reason"] == "transferred" and rec["ended_by"] == "agent"
        tool = next(tc for t in rec["turns"] for tc in t["tool_calls"] if tc["name"] == "transfer_call")
        assert tool["result"] == {"transferred": True}
    finally:
        await d.stop()
        await rest.stop()


async def test_without_the_token_transfer_is_not_offered(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"desk": AGENT})
    try:
        async with aiohttp.ClientSession() as http, http.ws_connect(f"http://127.0.0.1:{d.http_port}/media/twilio") as ws:
            p = Platform(ws, "MZX2")
            await _start(p, None)
            await p.wait_for("mark")
            session = d.calls.active[_call_id(d, "MZX2")]  # type: ignore[union-attr]
            assert session.tools.allowed == [] and session.tools.specs() == []
            await p.send("stop", stop={})
            await asyncio.wait_for(p.reader, 5)
    finally:
        await d.stop()
