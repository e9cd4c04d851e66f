"""The TLS+SRTP run of scripts/bench_sip.py (`--srtp`): what SDES-SRTP over SIP/TLS
costs voxd, on the same box in the same run.

One daemon process (TLS listener with a certificate from a CA made here, `srtp:
optional`, so plain offers get plain RTP and SRTP offers SRTP) takes rounds of K
concurrent baresip calls, alternating plain (UDP, RTP/AVP) and secure (`;transport=tls`,
`mediaenc=srtp-mand`: RTP/SAVP, AES_CM_128_HMAC_SHA1_80) so that drift in the load
of the machine hits both alike. CPU per call-second: utime+stime of the daemon over
a round, divided by the answered-to-ended seconds of that round's calls (from the
call records, which also say whether each call was SRTP and how many RTP packets it
sent and took). What SRTP adds per packet inside the daemon: the extra CPU per
call-second over the RTP packets per call-second. Alongside, SrtpContext in a tight
loop in this process (warm caches: the floor of what libsrtp costs here).

`--srtp-repeat` runs the whole thing that many times (a fresh daemon each, the first
kind alternating), and the verdict is on the median of the repeats: PASS if SRTP adds
under 15 % CPU per call-second.
"""

from __future__ import annotations

import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.sipd import SPEECH, Baresip, make_wav
from tests.interop.test_baresip_srtp import server_cert
from voxd.net.srtp import SrtpContext
from voxd.proto.rtp import RtpSender

SECURE_ACCOUNT = "<sip:caller@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand"
PLAIN_ACCOUNT = "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU"
TARGET_PCT = 15.0


@dataclass
class Kind:
    cpu_s: float = 0.0
    call_s: float = 0.0
    calls: int = 0
    srtp_calls: int = 0
    packets: int = 0  # RTP packets the daemon sent and took (call records)
    rounds: list[float] = field(default_factory=list)  # ms per call-second, round by round

    @property
    def per_call_s_ms(self) -> float:
        return self.cpu_s * 1000 / self.call_s if self.call_s else float("nan")

    @property
    def packets_per_call_s(self) -> float:
        return self.packets / self.call_s if self.call_s else float("nan")


def extra_pct(res: dict[str, Kind]) -> float:
    """What SRTP adds to the CPU per call-second, in per cent of plain."""
    plain, srtp = res["plain"].per_call_s_ms, res["srtp"].per_call_s_ms
    return 100 * (srtp / plain - 1) if plain > 0 else float("nan")


def extra_us_per_packet(res: dict[str, Kind]) -> float:
    """The extra CPU per call-second over the RTP packets per call-second of the SRTP calls."""
    srtp = res["srtp"]
    return (srtp.per_call_s_ms - res["plain"].per_call_s_ms) * 1000 / srtp.packets_per_call_s


def tight_loop(n: int = 20000) -> dict[str, float]:
    """µs per packet of SrtpContext (160-byte PCMU packets) protecting and unprotecting in a
    tight loop, and of pylibsrtp's Session API doing the same (what voxd called before)."""
    a, b = os.urandom(30), os.urandom(30)
    sender = RtpSender(0)
    packets = [sender.packet(bytes(160), 160).serialize() for _ in range(n)]
    out: dict[str, float] = {}
    tx, rx = SrtpContext("AES_CM_128_HMAC_SHA1_80", a, b), SrtpContext("AES_CM_128_HMAC_SHA1_80", b, a)
    t0 = time.process_time_ns()
    sent = [tx.protect(p) for p in packets]
    t1 = time.process_time_ns()
    for p in sent:
        rx.unprotect(p)
    t2 = time.process_time_ns()
    out["protect"], out["unprotect"] = (t1 - t0) / n / 1000, (t2 - t1) / n / 1000
    stx, srx = (SrtpContext("AES_CM_128_HMAC_SHA1_80", a, b)._tx.session,
                SrtpContext("AES_CM_128_HMAC_SHA1_80", b, a)._rx.session)
    t0 = time.process_time_ns()
    sent = [stx.protect(p) for p in packets]
    t1 = time.process_time_ns()
    for p in sent:
        srx.unprotect(p)
    t2 = time.process_time_ns()
    out["session_protect"], out["session_unprotect"] = (t1 - t0) / n / 1000, (t2 - t1) / n / 1000
    return out


def tls_config(work: Path) -> dict[str, Any]:
    ca, crt, key = server_cert(work)
    return {"srtp": "optional", "tls": {"enabled": True, "port": 0, "cert_file": str(crt), "key_file": str(key)},
            "_ca": str(ca)}


async def _one(work: Path, wav: Path, uri: str, secure: bool, ca: str, rtp: tuple[int, int]) -> None:
    extra = f"module\t\t\tsrtp.so\nsip_cafile\t\t{ca}\n" if secure else ""
    for attempt in range(3):  # concurrent starts can race for baresip's SIP/TLS ports
        b = Baresip(work / str(attempt), wav, rtp_range=rtp, quit_after_s=60,
                    account=SECURE_ACCOUNT if secure else PLAIN_ACCOUNT, extra_config=extra)
        try:
            await b.start()
            break
        except RuntimeError:
            await b.stop()
            if attempt == 2:
                raise
    try:
        async with asyncio.timeout(50):
            await b.command("dial", uri)
            await b.wait_event("CALL_ESTABLISHED", 15)
            await b.wait_event("CALL_CLOSED", 40)
    except TimeoutError:
        print(f"  baresip call in {work.name} did not finish", file=sys.stderr)
    finally:
        await b.stop()


async def srtp_rounds(d: Any, work: Path, *, concurrent: int, rounds: int, ca: str, sip_port: int, tls_port: int,
                      talk_s: float, srtp_first: bool = False) -> dict[str, Kind]:
    """Alternating plain and TLS+SRTP rounds of ``concurrent`` baresip calls to ``d``
    (a bench_sip.DaemonProc), plain first unless ``srtp_first``. Returns {"plain": Kind, "srtp": Kind}."""
    wav = await make_wav(work / "caller.wav", ("silence", 2.0),
                         (str(SPEECH / "flite-awb" / "what_time.8k.wav"), talk_s))
    out = {"plain": Kind(), "srtp": Kind()}
    seen = 0
    for r in range(2 * rounds):
        secure = (r % 2 == 1) != srtp_first
        kind = out["srtp" if secure else "plain"]
        uri = (f"sip:500@127.0.0.1:{tls_port};transport=tls" if secure else f"sip:500@127.0.0.1:{sip_port}")
        cpu0 = d.cpu_s()
        await asyncio.gather(*[_one(work / f"r{r}c{i}", wav, uri, secure, ca,
                                    (46000 + 20 * i, 46000 + 20 * i + 18)) for i in range(concurrent)])
        await asyncio.sleep(1.0)
        cpu = d.cpu_s() - cpu0
        recs = d.records()[seen:]
        for _ in range(20):  # a call baresip gave up on ends when its process stops
            if len(recs) >= concurrent and all(x["ended_at"] for x in recs):
                break
            await asyncio.sleep(0.5)
            recs = d.records()[seen:]
        seen += len(recs)
        if len(recs) != concurrent or any(bool(x["metadata"].get("srtp")) != secure for x in recs):
            # a call that did not end in its round would be counted in another: drop the round
            print(f"  round {r + 1} ({'SRTP' if secure else 'plain'}) dropped: {len(recs)} call records, "
                  f"{sum(1 for x in recs if x['metadata'].get('srtp'))} SRTP", file=sys.stderr)
            continue
        call_s = sum(x["ended_at"] - x["answered_at"] for x in recs if x["answered_at"] and x["ended_at"])
        kind.cpu_s += cpu
        kind.call_s += call_s
        kind.calls += len(recs)
        kind.srtp_calls += sum(1 for x in recs if x["metadata"].get("srtp"))
        kind.packets += sum(x["metadata"].get("rtp", {}).get("sent", 0) + x["metadata"].get("rtp", {}).get("received", 0)
                            for x in recs)
        kind.rounds.append(cpu * 1000 / call_s if call_s else float("nan"))
    return out


def report_srtp(res: dict[str, Kind], concurrent: int) -> float:
    """Prints one run; returns what SRTP added (per cent of plain CPU per call-second)."""
    plain, srtp = res["plain"], res["srtp"]
    print(f"TLS+SRTP vs plain ({concurrent} concurrent baresip calls per round, "
          f"{len(plain.rounds)} rounds each, alternating, one daemon):")
    for name, k in (("plain UDP/RTP", plain), ("TLS + SRTP", srtp)):
        print(f"  {name:14s} CPU per call-second {k.per_call_s_ms:6.2f} ms  ({k.cpu_s:.2f} s CPU over "
              f"{k.call_s:.0f} call-seconds, {k.packets_per_call_s:.0f} RTP packets per call-second; {k.calls} calls, "
              f"{k.srtp_calls} SRTP; rounds {', '.join(f'{x:.2f}' for x in k.rounds)} ms)")
    extra = extra_pct(res)
    print(f"  SRTP adds {extra:+.1f} % CPU per call-second, {extra_us_per_packet(res):.1f} µs per RTP packet "
          f"(target: under {TARGET_PCT:.0f} %)")
    return extra


def report_repeats(extras: list[float], per_packet: list[float], tight: dict[str, float]) -> bool:
    """The verdict on the median of the runs; True if it meets the target."""
    print(f"SrtpContext in a tight loop (this process): protect {tight['protect']:.2f} µs, unprotect "
          f"{tight['unprotect']:.2f} µs per packet (pylibsrtp's Session API: {tight['session_protect']:.2f}, "
          f"{tight['session_unprotect']:.2f} µs)")
    extras = [x for x in extras if x == x]  # a run whose rounds of one kind were all dropped: nan
    if not extras:
        print("no run measured both kinds: FAIL")
        return False
    med = statistics.median(extras)
    ok = med < TARGET_PCT
    print(f"SRTP adds {', '.join(f'{x:+.1f}' for x in extras)} % over {len(extras)} runs: median {med:+.1f} % "
          f"CPU per call-second, {statistics.median([x for x in per_packet if x == x]):.1f} µs per RTP packet in the daemon; "
          f"target under {TARGET_PCT:.0f} %: {'PASS' if ok else 'FAIL'}")
    return ok
