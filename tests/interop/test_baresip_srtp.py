"""A TLS + SDES-SRTP call from baresip (srtp.so, `mediaenc=srtp-mand`, `;transport=tls`)
into the daemon (`sip.tls`, `srtp: required`), watched by tshark on loopback.

What must hold: baresip hears the greeting (whisper transcribes its recording) and the
caller's question reaches the agent's STT and gets its reply; the call record says SRTP;
tshark finds no SIP at all in the capture (only a TLS handshake and encrypted records)
and the RTP it decodes carries no G.711: its payloads, read as mu-law, do not follow what
baresip heard (while in a plain call, captured the same way, they do) and look random.
"""

from __future__ import annotations

import asyncio
import datetime
import ipaddress
import math
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.interop.sipd import (
    SPEECH,
    baresip_available,
    baresip_call,
    call_records,
    frame_rms,
    make_wav,
    read_wav,
    run_checked,
    running_daemon,
    stop_process,
)
from tests.interop.test_baresip import GREETER, transcribe, words
from tests.net.test_sip_tls import make_ca
from voxd.proto.g711 import ulaw_decode

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not baresip_available() or not Path("/usr/lib/baresip/modules/srtp.so").exists(),
                       reason="baresip with srtp.so (baresip-core) not installed"),
    pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed"),
]

RTP = (32300, 32399)  # voxd's media ports: what comes from them is voxd -> baresip
BARESIP_RTP = (32400, 32499)


def server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """(CA file, certificate, key) for 127.0.0.1 and localhost, from a CA made here."""
    ca_cert, ca_key = make_ca()
    key = ec.generate_private_key(ec.SECP256R1())
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "voxd")]))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = folder / "ca.pem", folder / "sip.crt", folder / "sip.key"
    paths[0].write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


class Capture:
    """tshark on lo, into a pcap file; stopped by its PID."""

    def __init__(self, path: Path, bpf: str) -> None:
        self.path, self.bpf = path, bpf
        self.proc: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> Capture:
        self.proc = await asyncio.create_subprocess_exec(
            "tshark", "-i", "lo", "-f", self.bpf, "-w", str(self.path), "-q",
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE)
        assert self.proc.stderr is not None
        async with asyncio.timeout(15):  # "Capturing on 'Loopback: lo'"
            while b"Capturing on" not in await self.proc.stderr.readline():
                pass
        return self

    async def __aexit__(self, *exc: object) -> None:
        await asyncio.sleep(0.5)
        assert self.proc is not None
        await stop_process(self.proc)

    async def fields(self, display: str, *fields: str, decode: tuple[str, ...] = ()) -> list[list[str]]:
        args = ["tshark", "-r", str(self.path), "-o", "rtp.heuristic_rtp:TRUE", *decode, "-Y", display,
                "-T", "fields", *[x for f in fields for x in ("-e", f)]]
        out = await run_checked(args, limit_s=60)
        return [line.split("\t") for line in out.splitlines() if line.strip()]


async def voxd_payloads(cap: Capture) -> list[bytes]:
    """The payloads of the RTP voxd sent (from its media ports), as tshark decodes them."""
    rows = await cap.fields(f"rtp && udp.srcport >= {RTP[0]} && udp.srcport <= {RTP[1]}", "rtp.payload")
    return [bytes.fromhex(r[0].replace(":", "")) for r in rows if r and r[0]]  # in capture order


def entropy_bits(payloads: list[bytes]) -> float:
    counts = Counter(b for p in payloads for b in p)
    total = sum(counts.values())
    return -sum(c / total * math.log2(c / total) for c in counts.values())


def follows(payloads: list[bytes], heard: np.ndarray, rate: int) -> float:
    """How closely the payloads read as mu-law follow what baresip heard: the best
    correlation of the two 10 ms loudness envelopes over lags of up to 1 s."""
    sent = frame_rms(ulaw_decode(b"".join(payloads)).astype(np.int16), 8000)
    got = frame_rms(heard, rate)
    n = min(len(sent), len(got)) - 100
    best = 0.0
    for lag in range(0, 100):
        a, b = sent[:n], got[lag:lag + n]
        if a.std() > 0 and b.std() > 0:
            best = max(best, float(np.corrcoef(a, b)[0, 1]))
    return best


async def call(tmp: Path, name: str, caller: Path, *, tls: bool, certs: tuple[Path, Path, Path]) -> dict[str, Any]:
    ca, crt, key = certs
    sip: dict[str, Any] = {"srtp": "required" if tls else "off"}
    if tls:
        sip["tls"] = {"enabled": True, "port": 0, "cert_file": str(crt), "key_file": str(key)}
    async with running_daemon(tmp / name, {"greeter": GREETER}, RTP, **sip) as d:
        assert d.sip is not None
        if tls:
            assert d.sip_tls is not None and d.sip_tls.port is not None
            port = d.sip_tls.port
            uri = f"sip:100@127.0.0.1:{port};transport=tls"
            account = ("<sip:caller@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand")
            extra = f"module\t\t\tsrtp.so\nsip_cafile\t\t{ca}\n"
        else:
            port = d.sip.port
            uri, account, extra = f"sip:100@127.0.0.1:{port}", "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU", ""
        # this call's traffic only (other tests may be running on lo): voxd's SIP over UDP
        # (where cleartext SIP to or from voxd would go) and TLS, and both sides' media
        bpf = (f"udp port {d.sip.port} or tcp port {port} or udp portrange {RTP[0]}-{BARESIP_RTP[1]}")
        async with Capture(tmp / f"{name}.pcapng", bpf) as cap:
            b = await baresip_call(tmp / name / "baresip", caller, uri, timeout_s=45, account=account,
                                   extra_config=extra, rtp_range=BARESIP_RTP)
            (rec,) = await call_records(d)
    return {"rec": rec, "baresip": b, "cap": cap}


@pytest.mark.timeout(240)
async def test_tls_srtp_call_from_baresip_carries_no_cleartext(tmp_path: Path) -> None:
    certs = server_cert(tmp_path)
    caller = await make_wav(tmp_path / "caller.wav", ("silence", 4.0),
                            (str(SPEECH / "flite-slt" / "what_time.8k.wav"), 7.0))
    secure = await call(tmp_path, "srtp", caller, tls=True, certs=certs)
    rec, b, cap = secure["rec"], secure["baresip"], secure["cap"]
    assert "SRTP" in b.log() or "srtp" in b.log().lower(), b.log()[-2000:]
    # the call worked: the record says SRTP, media both ways, nothing failed to authenticate
    assert rec["metadata"]["srtp"] == "AES_CM_128_HMAC_SHA1_80", rec["metadata"]
    rtp = rec["metadata"]["rtp"]
    # baresip sends a 16-byte RTCP APP packet in the clear (twice): the only drops
    assert rtp["received"] > 300 and rtp["sent"] > 300 and rtp["srtp_dropped"] <= 2, rtp
    assert rtp["rtcp"]["received"] >= 1, rtp  # baresip's SRTCP authenticated and parsed
    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert said[0] == ("bot", "Hello! Ask me the time.")
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said  # STT heard baresip
    assert any(s == "bot" and t.startswith("It's") for s, t in said), said  # ... and the agent replied
    _, dec = b.recordings()
    heard, rate = read_wav(dec)
    text = await asyncio.to_thread(transcribe, dec, 0.0, 3.5)
    assert {"hello", "ask", "time"} <= words(text), text  # baresip decrypted and heard the greeting
    # TLS: tshark sees a handshake and encrypted records, and no SIP anywhere
    assert await cap.fields("tls.handshake.type == 1", "frame.number"), "no TLS ClientHello captured"
    assert len(await cap.fields("tls.app_data", "frame.number")) >= 4
    assert await cap.fields("sip", "frame.number") == []
    raw = cap.path.read_bytes()
    assert b"SIP/2.0" not in raw and b"INVITE" not in raw and b"a=crypto" not in raw and b"inline:" not in raw
    # SRTP: the RTP tshark decodes carries no G.711 a listener could play back
    srtp_payloads = await voxd_payloads(cap)
    assert len(srtp_payloads) > 300
    srtp_follow, srtp_entropy = follows(srtp_payloads, heard, rate), entropy_bits(srtp_payloads)

    # the same call in the clear, captured the same way: there the analysis does find the audio
    plain = await call(tmp_path, "plain", caller, tls=False, certs=certs)
    p_payloads = await voxd_payloads(plain["cap"])
    p_heard, p_rate = read_wav(plain["baresip"].recordings()[1])
    plain_follow, plain_entropy = follows(p_payloads, p_heard, p_rate), entropy_bits(p_payloads)
    assert await plain["cap"].fields("sip", "frame.number"), "tshark finds SIP in the plain capture"
    print(f"payload analysis: SRTP call follows what baresip heard r={srtp_follow:.2f}, byte entropy "
          f"{srtp_entropy:.2f} bits; plain call r={plain_follow:.2f}, entropy {plain_entropy:.2f} bits")
    assert plain_follow > 0.7 and plain_entropy < 7.0
    assert srtp_follow < 0.3 and srtp_entropy > 7.9
