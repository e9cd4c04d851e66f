"""An RTP stream on G.722 or Opus: the RTP clock is the codec's (160 a packet for
G.722, whose clock is 8000, 960 for Opus), and a G.722 caller's audio reaches the
call at 16 kHz (a 6 kHz tone, which 8 kHz audio cannot hold, is still there)."""

from __future__ import annotations

import asyncio
import itertools
import socket

import numpy as np
import pytest

from tests.media.test_codecs_wideband import peak_hz, rms, tone
from tests.net.test_rtcp import HOST, PEER_SSRC, peer_sockets, recv
from voxd.media import codecs
from voxd.media.audio import FRAME_SAMPLES
from voxd.media.frame import AudioFrame
from voxd.net.rtp import PortPool, RtpStream
from voxd.proto import negotiate
from voxd.proto.rtp import RtpPacket, is_rtcp
from voxd.proto.sdp import SessionDescription

OFFERS = {
    "G722": "m=audio {port} RTP/AVP 9 101\r\na=rtpmap:101 telephone-event/8000\r\n",
    "opus": ("m=audio {port} RTP/AVP 107 108\r\na=rtpmap:107 opus/48000/2\r\n"
             "a=rtpmap:108 telephone-event/48000\r\n"),
}


@pytest.fixture
def pool() -> PortPool:
    return PortPool(42600, 42800)


async def stream_for(pool: PortPool, name: str, peer: socket.socket,
                     got: list[AudioFrame], out: list[AudioFrame]) -> tuple[RtpStream, int]:
    text = (f"v=0\r\no=- 1 1 IN IP4 {HOST}\r\ns=-\r\nc=IN IP4 {HOST}\r\nt=0 0\r\n"
            + OFFERS[name].format(port=peer.getsockname()[1]))
    sock, port = pool.bind(HOST)
    neg = negotiate.answer(SessionDescription.parse(text), HOST, port, [name])
    assert neg.codec.name == name
    stream = RtpStream(neg, got.append, lambda d, s: None, lambda: out.pop(0) if out else None)
    await stream.open(sock, pool.rtcp_socket(port))
    return stream, port


async def rtp_from(sock: socket.socket, n: int) -> list[RtpPacket]:
    pkts: list[RtpPacket] = []
    while len(pkts) < n:
        data, _ = await recv(sock)
        if not is_rtcp(data):
            pkts.append(RtpPacket.parse(data))
    return pkts


@pytest.mark.parametrize(("name", "pt", "step"), [("G722", 9, 160), ("opus", 107, 960)])
async def test_what_we_send_runs_on_the_codecs_rtp_clock(pool: PortPool, name: str, pt: int, step: int) -> None:
    peer_rtp, peer_rtcp = peer_sockets()
    pcm = tone(1000.0, frames=10)
    out = [AudioFrame(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes()) for i in range(10)]
    stream, port = await stream_for(pool, name, peer_rtp, [], out)
    try:
        for _ in range(10):
            stream.send_tick()
        pkts = await rtp_from(peer_rtp, 10)
        assert {p.payload_type for p in pkts} == {pt}
        assert [(b.timestamp - a.timestamp) & 0xFFFFFFFF for a, b in itertools.pairwise(pkts)] == [step] * 9
        if name == "G722":
            assert {len(p.payload) for p in pkts} == {160}
        # what the peer got decodes back to the tone
        dec = codecs.get(name).decoder()
        heard = np.frombuffer(b"".join(dec.decode_packet(p.payload).pcm for p in pkts), "<i2")
        assert abs(peak_hz(heard[4 * FRAME_SAMPLES:]) - 1000.0) <= 30
        assert stream.sender.clock_rate == codecs.get(name).clock_rate
    finally:
        stream.close()
        pool.release(port)
        peer_rtp.close()
        peer_rtcp.close()


@pytest.mark.parametrize(("name", "pt", "step"), [("G722", 9, 160), ("opus", 107, 960)])
async def test_a_wideband_callers_audio_reaches_the_call_at_16k(pool: PortPool, name: str, pt: int,
                                                                 step: int) -> None:
    peer_rtp, peer_rtcp = peer_sockets()
    got: list[AudioFrame] = []
    stream, port = await stream_for(pool, name, peer_rtp, got, [])
    try:
        pcm = tone(6000.0, frames=30)
        enc = codecs.get(name).encoder()
        for n in range(30):
            payload = enc.encode(AudioFrame(pcm[n * FRAME_SAMPLES:(n + 1) * FRAME_SAMPLES].tobytes()))
            pkt = RtpPacket(payload_type=pt, sequence=500 + n, timestamp=step * n, ssrc=PEER_SSRC, payload=payload)
            peer_rtp.sendto(pkt.serialize(), (HOST, port))
            await asyncio.sleep(0.005)  # paced as the media clock plays (a burst would be trimmed)
            stream.receive_tick()
        assert stream.counters.received == 30 and stream.counters.ignored == 0
        voiced = [f for f in got if rms(np.frombuffer(f.pcm, "<i2")) > 1000]
        assert len(voiced) >= 15, len(voiced)
        heard = np.frombuffer(b"".join(f.pcm for f in voiced[4:]), "<i2")
        assert abs(peak_hz(heard) - 6000.0) <= 30  # 6 kHz: above what an 8 kHz path can carry
        assert rms(heard) > 0.6 * rms(pcm)
        assert stream.stats.clock_rate == stream.jitter.clock_rate == codecs.get(name).clock_rate
    finally:
        stream.close()
        pool.release(port)
        peer_rtp.close()
        peer_rtcp.close()
