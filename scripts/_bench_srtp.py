"""The TLS+SRTP run of scripts/bench_sip.py (`--srtp`): what SDES-SRTP over SIP/TLS
costs voxd, on the same box in the same run.

One daemon process (TLS listener with a certificate from a CA made here, `srtp:
optional`, so plain offers get plain RTP and SRTP offers SRTP) takes rounds of K
concurrent baresip calls, alternating plain (UDP, RTP/AVP) and secure (`;transport=tls`,
`mediaenc=srtp-mand`: RTP/SAVP, AES_CM_128_HMAC_SHA1_80) so that drift in the load
of the machine hits both alike. CPU per call-second: utime+stime of the daemon over
a round, divided by the answered-to-ended seconds of that round's calls (from the
call records, which also say whether each call was SRTP).
"""

from __future__ import annotations

import asyncio
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.interop.sipd import SPEECH, Baresip, make_wav
from tests.interop.test_baresip_srtp import server_cert

SECURE_ACCOUNT = "<sip:caller@127.0.0.1;transport=tls>;regint=0;audio_codecs=PCMU;mediaenc=srtp-mand"
PLAIN_ACCOUNT = "<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU"


@dataclass
class Kind:
    cpu_s: float = 0.0
    call_s: float = 0.0
    calls: int = 0
    srtp_calls: int = 0
    rounds: list[float] = field(default_factory=list)  # ms per call-second, round by round

    @property
    def per_call_s_ms(self) -> float:
        return self.cpu_s * 1000 / self.call_s if self.call_s else float("nan")


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
                      talk_s: float) -> dict[str, Kind]:
    """Alternating plain and TLS+SRTP rounds of ``concurrent`` baresip calls to ``d``
    (a bench_sip.DaemonProc). Returns {"plain": Kind, "srtp": Kind}."""
    wav = await make_wav(work / "caller.wav", ("silence", 2.0),
                         (str(SPEECH / "flite-awb" / "what_time.8k.wav"), talk_s))
    out = {"plain": Kind(), "srtp": Kind()}
    seen = 0
    for r in range(2 * rounds):
        secure = r % 2 == 1
        kind = out["srtp" if secure else "plain"]
        uri = (f"sip:500@127.0.0.1:{tls_port};transport=tls" if secure else f"sip:500@127.0.0.1:{sip_port}")
        cpu0 = d.cpu_s()
        await asyncio.gather(*[_one(work / f"r{r}c{i}", wav, uri, secure, ca,
                                    (46000 + 20 * i, 46000 + 20 * i + 18)) for i in range(concurrent)])
        await asyncio.sleep(1.0)
        cpu = d.cpu_s() - cpu0
        recs = d.records()[seen:]
        seen += len(recs)
        call_s = sum(x["ended_at"] - x["answered_at"] for x in recs if x["answered_at"] and x["ended_at"])
        kind.cpu_s += cpu
        kind.call_s += call_s
        kind.calls += len(recs)
        kind.srtp_calls += sum(1 for x in recs if x["metadata"].get("srtp"))
        kind.rounds.append(cpu * 1000 / call_s if call_s else float("nan"))
    return out


def report_srtp(res: dict[str, Kind], concurrent: int) -> None:
    plain, srtp = res["plain"], res["srtp"]
    print(f"TLS+SRTP vs plain ({concurrent} concurrent baresip calls per round, "
          f"{len(plain.rounds)} rounds each, alternating, one daemon):")
    for name, k in (("plain UDP/RTP", plain), ("TLS + SRTP", srtp)):
        print(f"  {name:14s} CPU per call-second {k.per_call_s_ms:6.1f} ms  ({k.cpu_s:.1f} s CPU over "
              f"{k.call_s:.0f} call-seconds; {k.calls} calls, {k.srtp_calls} SRTP; rounds "
              f"{', '.join(f'{x:.1f}' for x in k.rounds)} ms)")
    if plain.per_call_s_ms == plain.per_call_s_ms and plain.per_call_s_ms > 0:
        extra = 100 * (srtp.per_call_s_ms / plain.per_call_s_ms - 1)
        print(f"  SRTP adds {extra:+.1f} % CPU per call-second (target: under 15 %)")
