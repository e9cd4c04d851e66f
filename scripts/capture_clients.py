#!/usr/bin/env python3
"""Re-record the golden SIP/RTP captures in tests/data/ from real clients.

Runs sipp, baresip and linphonec (Debian: sip-tester, baresip-core, linphone-cli)
against a throwaway UDP answering script on 127.0.0.1 and saves the raw bytes of
the first INVITE/ACK/BYE/INFO each client sent plus some RTP and RFC 4733
packets. Everything stays on loopback; every client process is started here,
bounded in time and ended by its PID.

RTP captures are stored as a sequence of (2-byte big-endian length, packet).

    /work/venv/bin/python scripts/capture_clients.py [--only sipp,baresip,linphone]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import select
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIP_DIR = ROOT / "tests" / "data" / "sip"
RTP_DIR = ROOT / "tests" / "data" / "rtp"
HOST = "127.0.0.1"


def _hdr(msg: str, name: str, compact: str = "") -> str:
    pattern = rf"(?im)^(?:{re.escape(name)}{'|' + compact if compact else ''})[ \t]*:[ \t]*(.*)$"
    found = re.findall(pattern, msg)
    return found[0].strip() if found else ""


def _vias(msg: str) -> list[str]:
    return re.findall(r"(?im)^(?:via|v)[ \t]*:[ \t]*(.*)$", msg)


class Recorder:
    """A minimal UAS: 100/180/200 to INVITE, 200 to everything else."""

    def __init__(self, sip_port: int, rtp_port: int) -> None:
        self.sip = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sip.bind((HOST, sip_port))
        self.rtp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.rtp.bind((HOST, rtp_port))
        self.rtp_port = rtp_port
        self.first: dict[str, bytes] = {}
        self.audio: list[bytes] = []
        self.events: list[bytes] = []
        self.other: list[bytes] = []  # non-RTP (STUN) or unexpected payload types
        self.te_pts: set[int] = set()
        self.bye_seen = False

    def close(self) -> None:
        self.sip.close()
        self.rtp.close()

    def _answer_sdp(self, offer: str) -> str:
        te = re.findall(r"a=rtpmap:(\d+) telephone-event/8000", offer)
        self.te_pts.update(int(p) for p in re.findall(r"a=rtpmap:(\d+) telephone-event/", offer))
        fmts = "0" + (f" {te[0]}" if te else "")
        lines = ["v=0", f"o=capture 1 1 IN IP4 {HOST}", "s=capture", f"c=IN IP4 {HOST}",
                 "t=0 0", f"m=audio {self.rtp_port} RTP/AVP {fmts}", "a=rtpmap:0 PCMU/8000"]
        if te:
            lines += [f"a=rtpmap:{te[0]} telephone-event/8000", f"a=fmtp:{te[0]} 0-16"]
        lines.append("a=sendrecv")
        return "\r\n".join(lines) + "\r\n"

    def _respond(self, msg: str, code: int, reason: str, addr: tuple[str, int],
                 body: str = "", tag: str = "cap1") -> None:
        to = _hdr(msg, "To", "t")
        if code > 100 and ";tag=" not in to:
            to += f";tag={tag}"
        lines = [f"SIP/2.0 {code} {reason}"]
        lines += [f"Via: {v.strip()}" for v in _vias(msg)]
        lines += [f"From: {_hdr(msg, 'From', 'f')}", f"To: {to}",
                  f"Call-ID: {_hdr(msg, 'Call-ID', 'i')}", f"CSeq: {_hdr(msg, 'CSeq')}",
                  f"Contact: <sip:capture@{HOST}:{self.sip.getsockname()[1]}>"]
        if body:
            lines.append("Content-Type: application/sdp")
        lines.append(f"Content-Length: {len(body.encode())}")
        data = ("\r\n".join(lines) + "\r\n\r\n" + body).encode()
        self.sip.sendto(data, addr)

    def pump(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            ready, _, _ = select.select([self.sip, self.rtp], [], [], 0.05)
            for sock in ready:
                data, addr = sock.recvfrom(65535)
                if sock is self.rtp:
                    self._rtp(data)
                else:
                    self._sip(data, addr)

    def _rtp(self, data: bytes) -> None:
        if 200 <= data[1] <= 204:
            return
        pt = data[1] & 0x7F
        if len(data) < 12 or data[0] >> 6 != 2 or pt not in (0, 8, *self.te_pts):
            if len(self.other) < 3:
                self.other.append(data)
        elif pt in self.te_pts:
            if len(self.events) < 60:
                self.events.append(data)
        elif len(self.audio) < 5:
            self.audio.append(data)

    def _sip(self, data: bytes, addr: tuple[str, int]) -> None:
        text = data.decode("utf-8", "replace")
        method = text.split(" ", 1)[0]
        if method == "SIP/2.0":
            return
        self.first.setdefault(method, data)
        if method == "INVITE":
            self._respond(text, 100, "Trying", addr)
            self._respond(text, 180, "Ringing", addr)
            body = text.split("\r\n\r\n", 1)[1] if "\r\n\r\n" in text else ""
            self._respond(text, 200, "OK", addr, self._answer_sdp(body))
        elif method != "ACK":
            self._respond(text, 200, "OK", addr)
            if method == "BYE":
                self.bye_seen = True

    def save(self, name: str) -> None:
        SIP_DIR.mkdir(parents=True, exist_ok=True)
        RTP_DIR.mkdir(parents=True, exist_ok=True)
        for method, data in self.first.items():
            if method.isalpha():
                (SIP_DIR / f"{name}_{method.lower()}.sip").write_bytes(data)
        for label, packets in (("audio", self.audio), ("dtmf", self.events),
                               ("other", self.other)):
            if packets:
                blob = b"".join(len(p).to_bytes(2, "big") + p for p in packets)
                (RTP_DIR / f"{name}_{label}.rtp").write_bytes(blob)
        print(f"{name}: sip={sorted(self.first)} audio={len(self.audio)} "
              f"dtmf={len(self.events)} te_pts={sorted(self.te_pts)}")


def _stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def _silence_wav(path: Path, seconds: float) -> None:
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(8000)
        w.writeframes(b"\x00\x00" * int(8000 * seconds))


SIPP_SCENARIO = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="voxd capture">
  <send retrans="500"><![CDATA[
INVITE sip:agent@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:agent@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Subject: capture
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 53655765 2353687637 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 8 96 101
a=rtpmap:0 PCMU/8000
a=rtpmap:8 PCMA/8000
a=rtpmap:96 telephone-event/8000
a=fmtp:96 0-15
a=rtpmap:101 telephone-event/8000
a=fmtp:101 0-15
a=ptime:20
  ]]></send>
  <recv response="100" optional="true"/>
  <recv response="180" optional="true"/>
  <recv response="200" rrs="true"/>
  <send><![CDATA[
ACK [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 1 ACK
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <nop><action><exec rtp_stream="@ULAW@,1,0"/></action></nop>
  <pause milliseconds="500"/>
  <nop><action><exec play_dtmf="12#"/></action></nop>
  <pause milliseconds="2500"/>
  <send retrans="500"><![CDATA[
INFO [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 2 INFO
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Type: application/dtmf-relay
Content-Length: [len]

Signal=5
Duration=160
  ]]></send>
  <recv response="200"/>
  <nop><action><exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"/></action></nop>
  <pause milliseconds="1500"/>
  <send retrans="500"><![CDATA[
BYE [next_url] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch];rport
From: "sipp caller" <sip:sipp@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
[last_To:]
Call-ID: [call_id]
CSeq: 3 BYE
Contact: sip:sipp@[local_ip]:[local_port]
Max-Forwards: 70
Content-Length: 0

  ]]></send>
  <recv response="200"/>
</scenario>
"""


def _ulaw(sample: int) -> int:
    """G.711 mu-law of one sample (kept local: this script must not need voxd)."""
    sign = 0x80 if sample >= 0 else 0
    mag = min((~sample if sample < 0 else sample) >> 2, 8158) + 33
    seg = max(0, min(7, mag.bit_length() - 6))
    return (sign | ((7 - seg) << 4) | (15 - ((mag >> (seg + 1)) & 15))) & 0xFF


def run_sipp(work: Path) -> None:
    rec = Recorder(25080, 25082)
    scen = work / "uac.xml"
    ulaw = work / "tone.ulaw"
    # 1 s of a 440 Hz tone, headerless mu-law (sipp 3.6.1 would send a WAV header).
    tone = bytes(_ulaw(int(8000 * math.sin(2 * math.pi * 440 * n / 8000))) for n in range(8000))
    ulaw.write_bytes(tone)
    scen.write_text(SIPP_SCENARIO.replace("@ULAW@", str(ulaw)))
    proc = subprocess.Popen(
        ["sipp", f"{HOST}:25080", "-sf", str(scen), "-i", HOST, "-p", "25090",
         "-mp", "25100", "-m", "1", "-timeout", "20", "-timeout_error", "-nostdin"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rec.pump(9)
    finally:
        _stop(proc)
        rec.close()
    rec.save("sipp")


def _netstring(obj: dict[str, str]) -> bytes:
    data = json.dumps(obj).encode()
    return str(len(data)).encode() + b":" + data + b","


def run_baresip(work: Path) -> None:
    rec = Recorder(25180, 25182)
    cfg = work / "baresip"
    cfg.mkdir()
    wav = work / "silence.wav"
    _silence_wav(wav, 8)
    (cfg / "config").write_text(
        "poll_method epoll\nsip_listen 127.0.0.1:25190\nnet_interface 127.0.0.1\n"
        f"audio_source aufile,{wav}\naudio_player aubridge,nil\naudio_alert aubridge,nil\n"
        "rtp_ports 25200-25220\nmodule_path /usr/lib/baresip/modules\n"
        "module g711.so\nmodule menu.so\nmodule aufile.so\nmodule aubridge.so\nmodule account.so\n"
        "module ctrl_tcp.so\nctrl_tcp_listen 127.0.0.1:25195\n")
    (cfg / "accounts").write_text("<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU\n")
    (cfg / "contacts").write_text("")
    proc = subprocess.Popen(
        ["baresip", "-f", str(cfg), "-e", f"/dial sip:agent@{HOST}:25180", "-t", "14"],
        cwd=work, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        rec.pump(3)
        with socket.create_connection((HOST, 25195), timeout=2) as ctrl:
            for digit in "47":
                ctrl.sendall(_netstring({"command": "sndcode", "params": digit, "token": "1"}))
                rec.pump(0.6)
            rec.pump(1.5)
            ctrl.sendall(_netstring({"command": "hangup", "token": "2"}))
            rec.pump(2)
    finally:
        _stop(proc)
        rec.close()
    rec.save("baresip")


def run_linphone(work: Path, *, info: bool) -> None:
    base = 25280 if not info else 25380
    rec = Recorder(base, base + 2)
    home = work / ("lhome_info" if info else "lhome")
    (home / ".local" / "share" / "linphone").mkdir(parents=True)
    rc = home / "linphonerc"
    rc.write_text(
        f"[sip]\nsip_port={base + 10}\nbind_address=127.0.0.1\nuse_info={1 if info else 0}\n"
        f"use_rfc2833={0 if info else 1}\n[net]\nnat_address=127.0.0.1\nfirewall_policy=1\n"
        f"[rtp]\naudio_rtp_port={base + 20}\n[sound]\n")
    env = dict(os.environ, HOME=str(home))
    proc = subprocess.Popen(
        ["script", "-q", "-e", "-c", f"linphonec -c {rc}", "/dev/null"],
        cwd=work, env=env, stdin=subprocess.PIPE, stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True)
    assert proc.stdin is not None
    try:
        time.sleep(1.5)
        for cmd in ("soundcard use files", f"call sip:agent@{HOST}:{base}"):
            proc.stdin.write(cmd.encode() + b"\n")
            proc.stdin.flush()
            time.sleep(0.3)
        rec.pump(3)
        for digit in "39":
            proc.stdin.write(digit.encode() + b"\n")
            proc.stdin.flush()
            rec.pump(0.8)
        proc.stdin.write(b"terminate\n")
        proc.stdin.flush()
        rec.pump(1.5)
        proc.stdin.write(b"quit\n")
        proc.stdin.flush()
        rec.pump(0.5)
    finally:
        _stop(proc)
        rec.close()
    rec.save("linphone_info" if info else "linphone")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", default="sipp,baresip,linphone,linphone_info")
    args = parser.parse_args()
    wanted = set(args.only.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        if "sipp" in wanted and shutil.which("sipp"):
            run_sipp(work)
        if "baresip" in wanted and shutil.which("baresip"):
            run_baresip(work)
        if "linphone" in wanted and shutil.which("linphonec"):
            run_linphone(work, info=False)
        if "linphone_info" in wanted and shutil.which("linphonec"):
            run_linphone(work, info=True)


if __name__ == "__main__":
    main()
