"""Golden captures from sipp, baresip and linphonec (scripts/capture_clients.py)."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest

from voxd.proto.g711 import ulaw_decode
from voxd.proto.negotiate import answer
from voxd.proto.rfc4733 import DtmfReceiver, TelephoneEvent
from voxd.proto.rtp import RtpPacket, RtpParseError
from voxd.proto.sdp import SessionDescription
from voxd.proto.sip import SipRequest, UAConfig, UserAgent, parse_info_dtmf, parse_message
from voxd.proto.sip.events import IncomingCall

DATA = Path(__file__).resolve().parent.parent / "data"
SIP_FILES = sorted((DATA / "sip").glob("*.sip"))
CLIENTS = ["sipp", "baresip", "linphone", "linphone_info"]


def load_rtp(name: str) -> list[bytes]:
    blob = (DATA / "rtp" / f"{name}.rtp").read_bytes()
    packets, pos = [], 0
    while pos < len(blob):
        size = int.from_bytes(blob[pos : pos + 2], "big")
        packets.append(blob[pos + 2 : pos + 2 + size])
        pos += 2 + size
    return packets


def test_captures_present():
    names = {p.stem for p in SIP_FILES}
    for client in CLIENTS:
        assert {f"{client}_invite", f"{client}_ack", f"{client}_bye"} <= names
    assert {"sipp_info", "linphone_info_info"} <= names


@pytest.mark.parametrize("path", SIP_FILES, ids=lambda p: p.stem)
def test_sip_capture_round_trip(path):
    raw = path.read_bytes()
    msg = parse_message(raw)
    assert isinstance(msg, SipRequest)
    assert msg.method == path.stem.rsplit("_", 1)[1].upper()
    data = msg.serialize()
    again = parse_message(data)
    assert again.serialize() == data

    def fields(m):  # Content-Length is optional on UDP (linphone's ACK has none)
        return [(k, v) for k, v in m.headers if k != "Content-Length"]

    assert fields(again) == fields(msg) and again.body == msg.body
    # every header line of the original survives (modulo Content-Length spacing)
    original = [line for line in raw.split(b"\r\n\r\n", 1)[0].split(b"\r\n")[1:]
                if not line.lower().startswith(b"content-length")]
    serialized = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    for line in original:
        name, _, value = line.partition(b":")
        assert any(s.lower().startswith(name.lower() + b":") and s.endswith(value.strip())
                   for s in serialized), line
    assert msg.body == raw.split(b"\r\n\r\n", 1)[1][: len(msg.body)]
    assert len(msg.vias) == 1 and "rport" in msg.top_via.params
    assert msg.from_.tag and msg.top_via.branch and msg.top_via.branch.startswith("z9hG4bK")


# client -> telephone-event payload type picked (linphone with use_info=1 offers none)
EXPECTED_DTMF = {"sipp": 96, "baresip": 101, "linphone": 101, "linphone_info": None}


@pytest.mark.parametrize("client", CLIENTS)
def test_answer_each_clients_offer(client):
    invite = parse_message((DATA / "sip" / f"{client}_invite.sip").read_bytes())
    offer = SessionDescription.parse(invite.body)
    neg = answer(offer, "127.0.0.1", 30000)
    assert neg.codec.name == "PCMU" and neg.codec.payload_type == 0
    expected = EXPECTED_DTMF[client]
    if expected is None:
        assert neg.telephone_event is None
    else:
        assert neg.telephone_event is not None
        assert neg.telephone_event.clock_rate == 8000
        assert neg.telephone_event.payload_type == expected
    assert neg.direction == "sendrecv" and neg.remote_address is not None
    media = SessionDescription.parse(neg.sdp.serialize()).media[0]
    assert media.formats == ["0"] + ([str(expected)] if expected is not None else [])
    assert offer.serialize().count(b"m=audio") == 1
    assert SessionDescription.parse(offer.serialize()) == offer


def test_linphone_offer_has_three_event_rates():
    invite = parse_message((DATA / "sip" / "linphone_invite.sip").read_bytes())
    codecs = SessionDescription.parse(invite.body).media[0].codecs()
    rates = sorted(c.clock_rate for c in codecs if c.name == "telephone-event")
    assert rates == [8000, 16000, 48000]


@pytest.mark.parametrize("client", CLIENTS)
def test_user_agent_accepts_real_invite(client):
    raw = (DATA / "sip" / f"{client}_invite.sip").read_bytes()
    ua = UserAgent(UAConfig("127.0.0.1", 5060))
    events = ua.receive(raw, ("127.0.0.1", 40000), 0.0)
    assert [type(e) for e in events] == [IncomingCall]
    assert events[0].user == "agent"
    ((data, dst),) = ua.data_to_send()
    assert dst == ("127.0.0.1", 40000)  # rport: back to the source port
    assert parse_message(data).status == 100


@pytest.mark.parametrize(("client", "digit", "duration"),
                         [("sipp", "5", 160), ("linphone_info", "3", 250)])
def test_info_dtmf_capture(client, digit, duration):
    info = parse_message((DATA / "sip" / f"{client}_info.sip").read_bytes())
    got = parse_info_dtmf(info.headers.get("Content-Type") or "", info.body)
    assert got is not None and (got.digit, got.duration_ms) == (digit, duration)


@pytest.mark.parametrize(("client", "pts", "digits"), [
    ("sipp", {96, 101}, "12#1"),  # play_dtmf on 96, then dtmf_2833_1.pcap on 101
    ("baresip", {101}, "47"),
    ("linphone", {101}, "39"),
])
def test_rfc4733_captures(client, pts, digits):
    invite = parse_message((DATA / "sip" / f"{client}_invite.sip").read_bytes())
    neg = answer(SessionDescription.parse(invite.body), "127.0.0.1", 30000)
    assert neg.dtmf_payload_types == pts
    packets = load_rtp(f"{client}_dtmf")
    receiver = DtmfReceiver(neg.dtmf_payload_types)
    got = []
    for raw in packets:
        pkt = RtpPacket.parse(raw)
        assert pkt.serialize() == raw
        TelephoneEvent.parse(pkt.payload)
        got += [d.digit for d in receiver.feed(pkt)]
    got += [d.digit for d in receiver.flush()]
    assert "".join(got) == digits
    # clients repeat the end packet: there are more end packets than digits
    ends = sum(TelephoneEvent.parse(RtpPacket.parse(r).payload).end for r in packets)
    assert ends > len(digits)


@pytest.mark.parametrize("client", ["sipp", "baresip"])
def test_audio_captures(client):
    packets = [RtpPacket.parse(raw) for raw in load_rtp(f"{client}_audio")]
    assert all(p.payload_type == 0 and len(p.payload) == 160 for p in packets)
    seqs = [p.sequence for p in packets]
    assert [(b - a) & 0xFFFF for a, b in itertools.pairwise(seqs)] == [1] * 4
    assert {(b.timestamp - a.timestamp) & 0xFFFFFFFF
            for a, b in itertools.pairwise(packets)} == {160}
    if client == "sipp":  # sipp streamed a 440 Hz tone written by the capture script
        pcm = ulaw_decode(b"".join(p.payload for p in packets)).astype(float)
        spectrum = np.abs(np.fft.rfft(pcm))
        peak_hz = spectrum.argmax() * 8000 / len(pcm)
        assert abs(peak_hz - 440) < 10


def test_linphone_stun_on_rtp_port_is_rejected_as_rtp():
    for raw in load_rtp("linphone_other"):
        assert raw[4:8] == bytes.fromhex("2112a442")  # STUN magic cookie
        with pytest.raises(RtpParseError):
            RtpPacket.parse(raw)
