"""WebRTC transport: an aiortc peer calls the daemon over 127.0.0.1; web tokens; the page's routes."""

from __future__ import annotations

import asyncio
import fractions
import json
import time
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError
from av import AudioFrame

from tests.daemons import start_daemon, talker_agent, time_agent
from tests.synth import silence, voiced
from voxd.app import Daemon
from voxd.config import WebRtcConfig
from voxd.media.audio import resample
from voxd.net.webrtc import WebRtcSettings, ice_hosts
from voxd.net.webrtc_trickle import TRICKLE_KEY
from voxd.net.webtoken import InvalidToken, WebTokens
from voxd.store.calls import CallRepository
from voxd.store.keys import ApiKeyRepository


@pytest.fixture
async def daemon(tmp_path: Path) -> Any:
    d = await start_daemon(tmp_path, {"fakey": time_agent(), "other": time_agent(), "talker": talker_agent()})
    yield d
    await d.stop()


class MicTrack(MediaStreamTrack):
    """A fake microphone: 48 kHz mono frames of a PCM script, then silence, in real time."""

    kind = "audio"

    def __init__(self, pcm16k: bytes) -> None:
        super().__init__()
        self.pcm = resample(np.frombuffer(pcm16k, "<i2"), 16000, 48000).tobytes()
        self.pts = 0
        self.t0: float | None = None

    async def recv(self) -> AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self.t0 is None:
            self.t0 = loop.time()
        await asyncio.sleep(max(0.0, self.t0 + self.pts / 48000 - loop.time()))
        chunk = self.pcm[self.pts * 2 : (self.pts + 960) * 2]
        chunk += bytes(1920 - len(chunk))
        frame = AudioFrame(format="s16", layout="mono", samples=960)
        frame.planes[0].update(chunk)
        frame.pts, frame.sample_rate, frame.time_base = self.pts, 48000, fractions.Fraction(1, 48000)
        self.pts += 960
        return frame


class Browser:
    """The page's side of a call, in aiortc."""

    def __init__(self, pcm16k: bytes) -> None:
        self.pc = RTCPeerConnection()
        self.channel = self.pc.createDataChannel("voxd")
        self.messages: list[dict[str, Any]] = []
        self.got = asyncio.Event()
        self.loud_frames = 0
        self.tasks: list[asyncio.Task[None]] = []
        self.pc.addTrack(MicTrack(pcm16k))
        self.channel.on("message", self._on_message)
        self.pc.on("track", lambda t: self.tasks.append(asyncio.create_task(self._listen(t))))

    def _on_message(self, data: str) -> None:
        self.messages.append(json.loads(data))
        self.got.set()

    async def _listen(self, track: MediaStreamTrack) -> None:
        while True:
            try:
                frame = await track.recv()
            except MediaStreamError:
                return
            assert isinstance(frame, AudioFrame)
            if np.abs(frame.to_ndarray()).max() > 1000:
                self.loud_frames += 1

    async def offer(self, url: str, **body: Any) -> tuple[int, Any]:
        with ice_hosts(("127.0.0.1",)):
            await self.pc.setLocalDescription(await self.pc.createOffer())
        async with aiohttp.ClientSession() as http:
            headers = body.pop("headers", {})
            async with http.post(url + "/webrtc/offer", headers=headers,
                                 json={"type": "offer", "sdp": self.pc.localDescription.sdp, **body}) as r:
                if r.status != 200:
                    return r.status, await r.text()
                answer = await r.json()
        await self.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type=answer["type"]))
        return 200, answer

    async def wait_for(self, pred: Any, within_s: float = 10.0) -> dict[str, Any]:
        async with asyncio.timeout(within_s):
            while True:
                for m in self.messages:
                    if pred(m):
                        return m
                self.got.clear()
                await self.got.wait()

    def send(self, obj: dict[str, Any]) -> None:
        self.channel.send(json.dumps(obj))

    async def close(self) -> None:
        await self.pc.close()
        for t in self.tasks:
            t.cancel()


async def ended_record(daemon: Daemon, call_id: str) -> dict[str, Any] | None:
    """The call's record once no call is active any more (or after 5 s)."""
    assert daemon.calls is not None
    for _ in range(100):
        if not daemon.calls.active:
            break
        await asyncio.sleep(0.05)
    await daemon.calls.flush()
    return await CallRepository(daemon.db).get(call_id)


async def token_for(url: str, agent: str) -> str:
    async with aiohttp.ClientSession() as http, http.post(f"{url}/talk/{agent}/token") as r:
        assert r.status == 200
        return str((await r.json())["token"])


async def test_browser_call_audio_transcript_keypad_hangup(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    b = Browser(silence(1.8) + voiced(0.9) + silence(3.0))
    try:
        status, answer = await b.offer(url, agent="fakey", token=await token_for(url, "fakey"))
        assert status == 200, answer
        assert "a=candidate:" in answer["sdp"] and " 127.0.0.1 " in answer["sdp"]
        started = await b.wait_for(lambda m: m["type"] == "started")
        assert started["call_id"] == answer["call_id"]
        await b.wait_for(lambda m: m["type"] == "state" and m["state"] == "speaking")
        await b.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "caller", within_s=15)
        reply = await b.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "bot" and m["text"].startswith("It's"))
        assert not reply["interrupted"]
        assert b.loud_frames > 25  # greeting and reply came back as audible Opus
        b.send({"type": "dtmf", "digit": "5"})
        await b.wait_for(lambda m: m["type"] == "dtmf" and m["digit"] == "5")
        b.send({"type": "hangup"})
        end = await b.wait_for(lambda m: m["type"] == "end")
        assert end["reason"] == "caller_hangup"
    finally:
        await b.close()
    rec = await ended_record(daemon, answer["call_id"])
    assert rec is not None and rec["transport"] == "webrtc" and rec["end_reason"] == "caller_hangup"
    assert [(d["digit"], d["source"]) for d in rec["dtmf"]] == [("5", "webrtc")]
    assert ("caller", "what time is it") in [(t["speaker"], t["text"]) for t in rec["turns"]]


async def test_barge_in_stops_bot_audio_at_once(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    b = Browser(silence(2.0) + voiced(1.2) + silence(3.0))
    try:
        status, answer = await b.offer(url, agent="talker", token=await token_for(url, "talker"))
        assert status == 200, answer
        await b.wait_for(lambda m: m["type"] == "clear", within_s=10)
        loud_at_clear = b.loud_frames
        greeting = await b.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "bot")
        assert greeting["interrupted"] and 0 < len(greeting["text"].split()) < 20
        await asyncio.sleep(0.5)
        assert b.loud_frames - loud_at_clear < 10  # at most the browser-side jitter buffer played on
        await b.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "caller")
    finally:
        await b.close()


def split_candidates(sdp: str) -> tuple[str, list[str]]:
    """An offer as a trickling browser sends it (no candidates yet), and the candidates."""
    lines = sdp.splitlines()
    cands = [ln[2:] for ln in lines if ln.startswith("a=candidate:")]
    bare = [ln for ln in lines if not ln.startswith(("a=candidate:", "a=end-of-candidates"))]
    return "\r\n".join(bare) + "\r\n", cands


async def post_candidates(url: str, ice: dict[str, str], body: Any, token: str | None = None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {ice['token'] if token is None else token}"}
    async with aiohttp.ClientSession() as http, http.post(url + ice["candidates_url"], json=body, headers=headers) as r:
        return r.status, await r.text()


async def test_trickle_ice_candidates_after_the_offer(daemon: Daemon) -> None:
    """The page sends its offer before gathering ends and its candidates afterwards
    (RFC 8838): voxd's ICE agent takes them, the call runs, the record counts them."""
    url = f"http://127.0.0.1:{daemon.http_port}"
    trickle = daemon._runner.app[TRICKLE_KEY]  # type: ignore[union-attr]
    b = Browser(silence(1.5) + voiced(0.9) + silence(2.0))
    try:
        with ice_hosts(("127.0.0.1",)):
            await b.pc.setLocalDescription(await b.pc.createOffer())
        bare, cands = split_candidates(b.pc.localDescription.sdp)
        assert cands and "a=candidate" not in bare
        async with aiohttp.ClientSession() as http:
            body = {"type": "offer", "sdp": bare, "agent": "fakey", "token": await token_for(url, "fakey")}
            async with http.post(url + "/webrtc/offer", json=body) as r:
                assert r.status == 200, await r.text()
                answer = await r.json()
        ice = answer["ice"]
        assert ice["candidates_url"] == f"/webrtc/calls/{answer['call_id']}/candidates"
        assert trickle.remote_candidates(answer["call_id"]) == []
        await b.pc.setRemoteDescription(RTCSessionDescription(sdp=answer["sdp"], type="answer"))
        mid = b.pc.getTransceivers()[0].mid
        assert (await post_candidates(url, ice, {"candidates": [{"candidate": c, "sdpMid": mid} for c in cands]}))[0] == 204
        known = {(c.ip, c.port) for c in trickle.remote_candidates(answer["call_id"])}
        assert {(c.split()[4], int(c.split()[5])) for c in cands} <= known
        assert (await post_candidates(url, ice, {"candidates": [{"candidate": "", "sdpMid": mid}]}))[0] == 204
        status, text = await post_candidates(url, ice, {"candidates": [{"candidate": cands[0], "sdpMid": mid}]})
        assert status == 409 and "end-of-candidates" in text
        await b.wait_for(lambda m: m["type"] == "transcript" and m["speaker"] == "bot" and m["text"].startswith("It's"),
                         within_s=15)
        b.send({"type": "hangup"})
        await b.wait_for(lambda m: m["type"] == "end")
    finally:
        await b.close()
    rec = await ended_record(daemon, answer["call_id"])
    assert rec is not None and rec["end_reason"] == "caller_hangup"
    assert rec["metadata"]["ice_candidates_trickled"] == len(cands)
    assert (await post_candidates(url, ice, {"candidates": []}))[0] == 404  # the call is over


async def test_trickle_refuses_bad_requests(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    b = Browser(silence(0.5))
    try:
        status, answer = await b.offer(url, agent="fakey", token=await token_for(url, "fakey"))
        assert status == 200, answer
        ice = answer["ice"]
        good = {"candidates": [{"candidate": "candidate:1 1 udp 2130706431 127.0.0.1 40000 typ host", "sdpMid": "0"}]}
        assert (await post_candidates(url, ice, good, token="wrong"))[0] == 403
        assert (await post_candidates(url, {**ice, "candidates_url": "/webrtc/calls/nope/candidates"}, good))[0] == 404
        for body, why in [
            ({"candidates": "x"}, "expected"),
            ({"candidates": [{"candidate": "candidate:1 1 udp 1 127.0.0.1"}]}, "candidates[0]: not an ICE candidate"),
            ({"candidates": [good["candidates"][0], {"candidate": "candidate:x 1 udp p 1.2.3.4 9 typ host"}]},
             "candidates[1]"),
            ({"candidates": [{"candidate": good["candidates"][0]["candidate"], "sdpMLineIndex": "0"}]}, "sdpMLineIndex"),
            ({"candidates": [{"sdpMid": "0"}]}, "candidates[0]"),
        ]:
            status, text = await post_candidates(url, ice, body)
            assert status == 400 and why in text, (body, status, text)
        many = {"candidates": [{"candidate": f"candidate:{i} 1 udp 1 127.0.0.1 {40000 + i} typ host", "sdpMid": "0"}
                               for i in range(65)]}
        status, text = await post_candidates(url, ice, many)
        assert status == 400 and "too many" in text
        assert (await post_candidates(url, ice, good))[0] == 204  # nothing above was half-applied
        await b.wait_for(lambda m: m["type"] == "started")
    finally:
        await b.close()


async def test_offer_needs_a_valid_token_or_key(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    b = Browser(silence(0.5))
    try:
        assert (await b.offer(url, agent="fakey"))[0] == 401
        assert (await b.offer(url, agent="fakey", token="vxw1.e30.AAAA"))[0] == 403
        token = await token_for(url, "other")
        status, text = await b.offer(url, agent="fakey", token=token)
        assert status == 403 and "other" in text
        assert (await b.offer(url, agent="fakey", token="vx_live_" + "a" * 38))[0] == 403
        raw, _ = await ApiKeyRepository(daemon.db).create("web", ["calls:read"], created_by="test")
        assert (await b.offer(url, agent="fakey", headers={"Authorization": f"Bearer {raw}"}))[0] == 403
        raw, _ = await ApiKeyRepository(daemon.db).create("web", ["calls:write"], created_by="test")
        status, answer = await b.offer(url, agent="fakey", headers={"Authorization": f"Bearer {raw}"})
        assert status == 200, answer
        await b.wait_for(lambda m: m["type"] == "started")
    finally:
        await b.close()
    rec = await ended_record(daemon, answer["call_id"])  # the browser went away: connection_lost
    assert rec is not None and rec["end_reason"] == "connection_lost"


async def test_page_and_playground_routes(daemon: Daemon) -> None:
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http:
        async with http.get(url + "/talk/fakey") as r:
            assert r.status == 200 and "talk.js" in await r.text()
        async with http.get(url + "/talk/static/talk.js") as r:
            assert r.status == 200 and "RTCPeerConnection" in await r.text()
        async with http.get(url + "/talk/static/../../app.py") as r:
            assert r.status == 404
        async with http.get(url + "/talk/nobody") as r:
            assert r.status == 404
        async with http.post(url + "/talk/fakey/token", headers={"X-Forwarded-For": "203.0.113.9"}) as r:
            assert r.status == 403
        async with http.get(url + "/webrtc/ice") as r:
            assert await r.json() == {"ice_servers": []}
        async with http.post(url + "/webrtc/offer", data=b"nope") as r:
            assert r.status == 400


def test_web_tokens(tmp_path: Path) -> None:
    tokens = WebTokens.from_state_dir(tmp_path)
    assert (tmp_path / "web_token.key").stat().st_mode & 0o777 == 0o600
    token, exp = tokens.mint("fakey", ttl_s=60)
    assert exp > time.time() + 59
    with pytest.raises(InvalidToken, match="agent"):
        tokens.verify(token, "other")
    assert tokens.verify(token, "fakey").agent == "fakey"
    with pytest.raises(InvalidToken, match="already used"):
        tokens.verify(token, "fakey")
    again = WebTokens.from_state_dir(tmp_path)  # same secret from the state dir
    token, _ = again.mint("fakey", ttl_s=60)
    assert tokens.verify(token, consume=False).agent == "fakey"
    with pytest.raises(InvalidToken, match="expired"):
        tokens.verify(token, now=time.time() + 61)
    head, claims, sig = token.split(".")
    with pytest.raises(InvalidToken, match="signature"):
        tokens.verify(f"{head}.{claims}x.{sig}")
    with pytest.raises(InvalidToken, match="signature"):
        WebTokens(b"another secret of 32 bytes......").verify(token)


async def test_ice_settings_come_from_the_live_config(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    """webrtc.hosts picks the host candidates in the answer; webrtc.ice_servers reaches the page
    with the TURN credential read from its environment variable; a reload applies to the next call."""
    monkeypatch.setenv("TEST_TURN_SECRET", "s3cret")
    daemon.cfg = daemon.cfg.model_copy(update={"webrtc": WebRtcConfig.model_validate({
        "hosts": ["127.0.0.1"],
        "ice_servers": [{"urls": "stun:127.0.0.1:3478"},
                        {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u1", "credential_env": "TEST_TURN_SECRET"}],
    })})
    url = f"http://127.0.0.1:{daemon.http_port}"
    async with aiohttp.ClientSession() as http, http.get(url + "/webrtc/ice") as r:
        assert await r.json() == {"ice_servers": [
            {"urls": "stun:127.0.0.1:3478"},
            {"urls": ["turn:127.0.0.1:3478?transport=udp"], "username": "u1", "credential": "s3cret"}]}
    assert "s3cret" not in repr(daemon.cfg)  # the file holds only the variable's name
    assert "s3cret" not in repr(WebRtcSettings.from_config(daemon.cfg.webrtc))  # safe to log
    b = Browser(silence(0.5))
    try:
        status, answer = await b.offer(url, token=await token_for(url, "fakey"))
        assert status == 200
        hosts = {line.split()[4] for line in answer["sdp"].splitlines() if line.startswith("a=candidate:")}
        assert hosts == {"127.0.0.1"}
        await b.wait_for(lambda m: m["type"] == "started")
        b.send({"type": "hangup"})
        await b.wait_for(lambda m: m["type"] == "end")
    finally:
        await b.close()
    # the environment overrides the file, and a broken value is ignored with an error, not a failed call
    monkeypatch.setenv("VOXD_WEBRTC_ICE_SERVERS", "not json")
    async with aiohttp.ClientSession() as http, http.get(url + "/webrtc/ice") as r:
        assert len((await r.json())["ice_servers"]) == 2
    monkeypatch.setenv("VOXD_WEBRTC_ICE_SERVERS", '[{"urls": "stun:127.0.0.1:9"}]')
    async with aiohttp.ClientSession() as http, http.get(url + "/webrtc/ice") as r:
        assert await r.json() == {"ice_servers": [{"urls": "stun:127.0.0.1:9"}]}


async def test_webrtc_can_be_turned_off(tmp_path: Path) -> None:
    d = await start_daemon(tmp_path, {"fakey": time_agent()}, webrtc={"enabled": False})
    try:
        async with aiohttp.ClientSession() as http:
            async with http.post(f"http://127.0.0.1:{d.http_port}/webrtc/offer", json={}) as r:
                assert r.status in (404, 405)
            async with http.get(f"http://127.0.0.1:{d.http_port}/talk/fakey") as r:
                assert r.status == 404
    finally:
        await d.stop()
