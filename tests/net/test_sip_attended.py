"""Hold and attended transfer through a daemon's real SIP and RTP sockets, with SIP
peers in the test (voxd's own user agent on UDP sockets, tests/net/sip_peer.py).

- The caller holds the call: the answer mirrors the direction, the bot sends no RTP
  and takes no turns while held, and carries on once the caller resumes.
- Attended transfer (keypad option ``mode: attended``): the caller is re-INVITEd to
  ``sendonly`` and hears hold audio, the target is called and hears the summary, the
  caller gets a REFER whose Refer-To carries Replaces naming the target's dialog; the
  caller's INVITE with that Replaces is matched by the target; on the final NOTIFY 200
  voxd hangs up both its legs. A target that refuses, or a NOTIFY reporting failure,
  takes the caller off hold and the call goes on.
- An INVITE with Replaces naming a call of voxd's takes that call over; one naming
  none gets 481.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.daemons import start_daemon
from tests.interop.sipd import free_udp_tcp_port
from tests.net.sip_peer import SipPeer, level
from tests.synth import voiced
from voxd.app import Daemon
from voxd.net.sip_calls import SipCall
from voxd.proto import secure_sdp
from voxd.proto.sdes import new_crypto
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import (
    ByeReceived,
    CallCancelled,
    CallEstablished,
    CallFailed,
    IncomingCall,
    ReferReceived,
    ReInvite,
    ReofferAnswered,
)
from voxd.proto.sip.replaces import Replaces, replaces_in_refer_to
from voxd.proto.sip.uri import SipUri


def agent_yaml(target_port: int) -> str:
    return f"""
greeting: "Hello, this is the front desk of the test line, how can I help you today."
stt: {{engine: fake, options: {{transcripts: ["hello there"]}}}}
llm: {{engine: dialog}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: 400}}
sip: {{numbers: ["2000"]}}
dtmf:
  main_menu: main
  start_menu: true
  menus:
    main:
      prompt: Press four.
      timeout_ms: 60000
      options:
        "4": {{say: Connecting you., then: transfer, target: "sip:target@127.0.0.1:{target_port}",
              mode: attended, summary: "A caller about an invoice."}}
"""


@pytest.fixture
async def peers() -> AsyncIterator[tuple[SipPeer, SipPeer]]:
    caller, target = await SipPeer("caller").start(), await SipPeer("target").start()
    yield caller, target
    caller.close()
    target.close()


async def daemon(tmp_path: Path, target: SipPeer, **sip: object) -> Daemon:
    return await start_daemon(tmp_path, {"front": agent_yaml(target.port)}, default_agent="front", sip={
        "port": free_udp_tcp_port(), "rtp_port_min": 32400, "rtp_port_max": 32600, "srtp": "off",
        "transfer_ring_s": 3, **sip})


def voxd_call(d: Daemon) -> SipCall:
    assert d.sip is not None
    (call,) = [c for c in d.sip.sip_calls.values() if not c.consult]
    return call


async def place_call(d: Daemon, caller: SipPeer) -> tuple[str, tuple[str, int]]:
    assert d.sip is not None
    cid = caller.agent.invite(f"sip:2000@127.0.0.1:{d.sip.port}", time.monotonic(), sdp=caller.offer(),
                              peer=("127.0.0.1", d.sip.port))
    caller.flush()
    est = await caller.wait_for(CallEstablished, call_id=cid)
    media = SessionDescription.parse(est.answer).audio()
    assert media is not None
    return cid, ("127.0.0.1", media.port)


def answer_reoffer(peer: SipPeer, e: ReInvite) -> bytes:
    sdp = peer.answer_for(e.offer)
    peer.agent.answer_reoffer(e.call_id, sdp, time.monotonic())
    peer.flush()
    return sdp


async def press(caller: SipPeer, cid: str, digit: str) -> None:
    caller.agent.send_info_dtmf(cid, digit, time.monotonic())
    caller.flush()


async def wait_until(pred: object, within: float = 10.0) -> None:
    end = time.monotonic() + within
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < end, "condition not met in time"
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("direction", ["sendonly", "inactive", "c=0.0.0.0"])
async def test_caller_hold_silences_the_bot_and_its_ears(tmp_path: Path, peers: tuple[SipPeer, SipPeer],
                                                         direction: str) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)
    try:
        cid, media = await place_call(d, caller)
        call = voxd_call(d)
        assert call.session is not None
        await asyncio.sleep(0.5)
        assert level(caller.rtp_since(time.monotonic() - 0.4)) > 100  # the greeting is playing
        offer = caller.offer("sendonly" if direction == "sendonly" else
                             "inactive" if direction == "inactive" else "sendrecv")
        if direction == "c=0.0.0.0":
            offer = offer.replace(b"c=IN IP4 127.0.0.1", b"c=IN IP4 0.0.0.0")
        caller.agent.reoffer(cid, offer, time.monotonic())
        caller.flush()
        await wait_until(lambda: call.session is not None and call.session.held)
        ok = await caller.wait_for(ReofferAnswered, call_id=cid)
        expect = {"sendonly": b"a=recvonly", "inactive": b"a=inactive", "c=0.0.0.0": b"a=recvonly"}[direction]
        assert expect in ok.answer
        held_at = time.monotonic() + 0.1
        await caller.send_audio(voiced(1.2), media)  # speech while held: nobody listens
        await asyncio.sleep(0.6)
        assert caller.rtp_since(held_at) == []  # and the bot sends nothing
        assert [t for t in call.session.record.turns if t.speaker == "caller"] == []
        caller.agent.reoffer(cid, caller.offer(), time.monotonic())
        caller.flush()
        await wait_until(lambda: call.session is not None and not call.session.held)
        resumed = time.monotonic()
        await caller.send_audio(voiced(1.0), media)
        await wait_until(lambda: any(t.speaker == "caller" for t in call.session.record.turns))  # type: ignore[union-attr]
        assert caller.rtp_since(resumed)  # the bot's audio flows again
        assert call.session.record.metadata["holds"] == 1
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
    finally:
        await d.stop()


async def _hold_and_dial(d: Daemon, caller: SipPeer, target: SipPeer) -> tuple[str, SipCall, IncomingCall]:
    cid, _ = await place_call(d, caller)
    call = voxd_call(d)
    await asyncio.sleep(0.3)
    await press(caller, cid, "4")
    hold = await caller.wait_for(ReInvite, hold=True)
    assert b"a=sendonly" in hold.offer
    answer_reoffer(caller, hold)
    incoming = await target.wait_for(IncomingCall, within=15)
    assert call.session is not None and call.session.held
    return cid, call, incoming


async def test_attended_transfer_hands_the_caller_to_the_target(tmp_path: Path,
                                                                peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)
    try:
        cid, call, incoming = await _hold_and_dial(d, caller, target)
        held_from = time.monotonic()
        await asyncio.sleep(0.8)
        assert level(caller.rtp_since(held_from)) > 100  # hold audio (the first tones of the pattern)
        tid = incoming.call_id
        target.agent.answer(tid, target.answer_for(incoming.offer), time.monotonic())
        target.flush()
        refer = await caller.wait_for(ReferReceived, within=15)
        assert level(target.rtp_since(0)) > 1000  # the target heard the summary (the fake voice's tone)
        rep = replaces_in_refer_to(SipUri.parse(refer.refer_to))
        theirs = target.agent.calls[tid]
        assert rep is not None and rep.call_id == tid
        assert rep.matches(tid, local_tag=theirs.local_tag, remote_tag=theirs.remote.tag or "")
        uri = SipUri.parse(refer.refer_to)
        assert (uri.user, uri.port) == ("target", target.port)
        # the caller does as asked: INVITE with Replaces to the target, which takes it
        new = caller.agent.invite(f"sip:target@127.0.0.1:{target.port}", time.monotonic(), sdp=caller.offer(),
                                  peer=("127.0.0.1", target.port), headers=[("Replaces", rep.serialize())])
        caller.flush()
        swapped = await target.wait_for(IncomingCall, replaces=tid)
        assert swapped.call_id == new
        target.agent.answer(new, target.answer_for(swapped.offer), time.monotonic())
        target.agent.bye(tid, time.monotonic())  # RFC 3891: the replaced dialog ends
        target.flush()
        caller.agent.notify_refer(cid, 200, time.monotonic())
        caller.flush()
        await caller.wait_for(ByeReceived, call_id=cid, within=10)
        assert d.calls is not None
        await wait_until(lambda: not d.calls.active and not d.sip.sip_calls)  # type: ignore[union-attr]
        assert call.session is not None
        rec = call.session.record
        assert rec.end_reason == "transferred" and rec.ended_by == "agent"
        note = rec.metadata["transfer"]
        assert note["outcome"] == "transferred" and note["mode"] == "attended" and note["progress"] == [100, 200]
        assert not target.of(ByeReceived)  # the target ended the consultation itself: no BYE from voxd
    finally:
        await d.stop()


async def test_target_refusing_takes_the_caller_off_hold(tmp_path: Path, peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)
    try:
        cid, call, incoming = await _hold_and_dial(d, caller, target)
        target.agent.reject(incoming.call_id, 486, time.monotonic())
        target.flush()
        unhold = await caller.wait_for(ReInvite, hold=False)
        assert b"a=sendrecv" in unhold.offer
        answer_reoffer(caller, unhold)
        back = time.monotonic()
        assert call.session is not None
        await wait_until(lambda: call.session is not None and not call.session.held and call.hold_audio is None)
        note = call.session.record.metadata["transfer"]
        assert note["outcome"] == "failed" and "486" in note["reason"]
        await asyncio.sleep(1.0)
        assert level(caller.rtp_since(back)) > 1000  # the agent speaks again (its "couldn't transfer" line)
        assert not call.ended and not caller.of(ByeReceived)
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
    finally:
        await d.stop()


async def test_failed_refer_ends_the_consultation_and_resumes(tmp_path: Path,
                                                              peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)
    try:
        cid, call, incoming = await _hold_and_dial(d, caller, target)
        target.agent.answer(incoming.call_id, target.answer_for(incoming.offer), time.monotonic())
        target.flush()
        await caller.wait_for(ReferReceived, within=15)
        caller.agent.notify_refer(cid, 503, time.monotonic())
        caller.flush()
        await target.wait_for(ByeReceived, call_id=incoming.call_id)  # voxd hangs up its consultation
        answer_reoffer(caller, await caller.wait_for(ReInvite, hold=False))
        assert call.session is not None
        note = call.session.record.metadata["transfer"]
        assert note["outcome"] == "failed" and "503" in note["reason"] and note["progress"] == [100, 503]
        assert not call.ended
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
        await wait_until(lambda: call.ended)
    finally:
        await d.stop()


async def test_an_invite_with_replaces_takes_a_call_over(tmp_path: Path, peers: tuple[SipPeer, SipPeer]) -> None:
    caller, other = peers
    d = await daemon(tmp_path, other)
    try:
        assert d.sip is not None
        cid, _ = await place_call(d, caller)
        call = voxd_call(d)
        session = call.session
        mine = caller.agent.calls[cid]
        port = ("127.0.0.1", d.sip.port)
        wrong = Replaces(cid, "nope", mine.local_tag)
        bad = other.agent.invite(f"sip:2000@127.0.0.1:{d.sip.port}", time.monotonic(), sdp=other.offer(),
                                 peer=port, headers=[("Replaces", wrong.serialize())])
        other.flush()
        failed = await other.wait_for(CallFailed, call_id=bad)
        assert failed.status == 481
        rep = Replaces(cid, mine.remote.tag or "", mine.local_tag)  # voxd's tag is its to-tag
        new = other.agent.invite(f"sip:2000@127.0.0.1:{d.sip.port}", time.monotonic(), sdp=other.offer(),
                                 peer=port, headers=[("Replaces", rep.serialize())])
        other.flush()
        await other.wait_for(CallEstablished, call_id=new)
        await caller.wait_for(ByeReceived, call_id=cid)  # the replaced party is let go
        assert call.call_id == new and d.sip.sip_calls == {new: call} and call.session is session
        assert session is not None and not session.closed
        assert session.record.metadata["replaced"]["sip_call_id"] == cid
        got = time.monotonic()
        await asyncio.sleep(0.5)
        assert other.rtp_since(got)  # the bot's voice now goes to the new party
        other.agent.bye(new, time.monotonic())
        other.flush()
        await wait_until(lambda: session.closed)
        assert session.record.end_reason == "caller_hangup"
    finally:
        await d.stop()


async def test_a_target_that_never_answers_is_cancelled(tmp_path: Path, peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)  # sip.transfer_ring_s: 3
    try:
        cid, call, incoming = await _hold_and_dial(d, caller, target)
        target.agent.ring(incoming.call_id, time.monotonic())
        target.flush()
        rang = time.monotonic()
        await target.wait_for(CallCancelled, call_id=incoming.call_id, within=10)
        assert 2.5 < time.monotonic() - rang < 6
        answer_reoffer(caller, await caller.wait_for(ReInvite, hold=False))
        assert call.session is not None
        note = call.session.record.metadata["transfer"]
        assert note["outcome"] == "failed" and "did not answer within 3 s" in note["reason"]
        await wait_until(lambda: call.session is not None and not call.session.held)
        assert d.sip is not None and list(d.sip.sip_calls.values()) == [call]  # the consultation is gone
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
        await wait_until(lambda: call.ended)
    finally:
        await d.stop()


async def test_the_caller_hanging_up_while_held_ends_the_consultation(tmp_path: Path,
                                                                      peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target)
    try:
        cid, call, incoming = await _hold_and_dial(d, caller, target)
        target.agent.answer(incoming.call_id, target.answer_for(incoming.offer), time.monotonic())
        target.flush()
        await target.wait_for(CallEstablished, call_id=incoming.call_id)
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
        await target.wait_for(ByeReceived, call_id=incoming.call_id)
        assert d.sip is not None
        await wait_until(lambda: not d.sip.sip_calls)  # type: ignore[union-attr]
        assert call.session is not None and call.session.record.end_reason == "caller_hangup"
        assert not [e for e in caller.of(ReInvite) if not e.hold]  # nobody to take off hold
    finally:
        await d.stop()


async def test_hold_on_an_srtp_call_takes_the_key_the_caller_answers_with(
        tmp_path: Path, peers: tuple[SipPeer, SipPeer]) -> None:
    caller, target = peers
    d = await daemon(tmp_path, target, srtp="optional")
    try:
        assert d.sip is not None
        mine = new_crypto(1)
        sdp = (f"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               f"m=audio {caller.rtp_port} RTP/SAVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
               f"a=crypto:{mine.serialize()}\r\n").encode()
        cid = caller.agent.invite(f"sip:2000@127.0.0.1:{d.sip.port}", time.monotonic(), sdp=sdp,
                                  peer=("127.0.0.1", d.sip.port))
        caller.flush()
        await caller.wait_for(CallEstablished, call_id=cid)
        call = voxd_call(d)
        assert call.rtp is not None and call.rtp.srtp is not None
        assert call.rtp.srtp.remote_key == mine.keys[0].key_salt
        await asyncio.sleep(0.3)
        await press(caller, cid, "4")
        hold = await caller.wait_for(ReInvite, hold=True)
        assert b"RTP/SAVP" in hold.offer and b"a=crypto:" in hold.offer and b"a=sendonly" in hold.offer
        neg = secure_sdp.answer(SessionDescription.parse(hold.offer), "127.0.0.1", caller.rtp_port, ["PCMU"],
                                policy="required")
        assert neg.srtp is not None and neg.direction == "recvonly"
        caller.agent.answer_reoffer(cid, neg.sdp.serialize(), time.monotonic())  # with a key of its own, new
        caller.flush()
        await wait_until(lambda: call.rtp is not None and call.rtp.srtp is not None
                         and call.rtp.srtp.remote_key == neg.srtp.local.keys[0].key_salt)  # type: ignore[union-attr]
        incoming = await target.wait_for(IncomingCall, within=15)
        assert b"a=crypto:" in incoming.offer  # the consultation offers SRTP too (sip.srtp: optional)
        target.agent.reject(incoming.call_id, 603, time.monotonic())
        target.flush()
        unhold = await caller.wait_for(ReInvite, hold=False)
        assert b"a=sendrecv" in unhold.offer and b"RTP/SAVP" in unhold.offer
        answer_reoffer_srtp = secure_sdp.answer(SessionDescription.parse(unhold.offer), "127.0.0.1", caller.rtp_port,
                                                ["PCMU"], policy="required")
        caller.agent.answer_reoffer(cid, answer_reoffer_srtp.sdp.serialize(), time.monotonic())
        caller.flush()
        assert answer_reoffer_srtp.srtp is not None
        await wait_until(lambda: call.rtp is not None and call.rtp.srtp is not None
                         and call.rtp.srtp.remote_key == answer_reoffer_srtp.srtp.local.keys[0].key_salt)  # type: ignore[union-attr]
        assert not call.ended
        caller.agent.bye(cid, time.monotonic())
        caller.flush()
        await wait_until(lambda: call.ended)
    finally:
        await d.stop()
