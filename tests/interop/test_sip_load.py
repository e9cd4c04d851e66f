"""Load: sipp keeps 50 calls up at once, 200 in all, against the daemon's defaults.

Each sipp call streams a short flite utterance (rtp_stream), presses 5 (RFC 4733,
payload type 96) and hangs up. The agent runs on the fake engines so the load is
voxd's own SIP, RTP and session work. Every call must complete: sipp's exit code
and -trace_stat, and one call record per call with the digit and media both ways.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pytest

from tests.interop.sipd import (
    SPEECH,
    call_records,
    make_ulaw,
    run_sipp_load,
    running_daemon,
    write_load_scenario,
)

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]

CALLS = 200
CONCURRENT = 50

AGENT = """
greeting: Hello from the load test.
stt: {engine: fake, options: {transcripts: ["what time is it"]}}
llm: {engine: fake}
voice: {engine: fake}
turn: {detector: silence, max_silence_ms: 500}
sip: {numbers: ["500"]}
"""


@pytest.mark.timeout(180)
async def test_fifty_concurrent_two_hundred_calls(tmp_path: Path) -> None:
    ulaw = await make_ulaw(tmp_path / "caller.ulaw", SPEECH / "flite-awb" / "what_time.8k.wav")
    scenario = write_load_scenario(tmp_path / "load.xml", "500", ulaw, digits="5", talk_ms=3000, tail_ms=3000)
    # the daemon's default limits (max_calls 200, max_calls_per_source 50): sipp keeps
    # exactly as many calls up as one source may have
    async with running_daemon(tmp_path, {"load": AGENT}, (33000, 33400)) as d:
        res = await run_sipp_load(f"127.0.0.1:{d.sip.port}", scenario, tmp_path, calls=CALLS,
                                  concurrent=CONCURRENT, rate=25, limit_s=100)
        recs = await call_records(d, limit=CALLS + 10)
        assert d.sip.ports.in_use == 0 and not d.sip.sip_calls, "media ports or calls left behind"
        late = d.clock.late_ticks

    refused = res.errors.count("SIP/2.0 503")
    assert res.returncode == 0 and res.successful == CALLS and res.failed == 0, (
        f"sipp rc={res.returncode} successful={res.successful} failed={res.failed} "
        f"(503 answers: {refused}) {res.stderr[-500:]} {res.errors[-1500:]}")
    assert len(recs) == CALLS, Counter(r["end_reason"] for r in recs)
    assert Counter(r["end_reason"] for r in recs) == {"caller_hangup": CALLS}
    assert all(r["transport"] == "sip" and r["agent"] == "load" for r in recs)
    assert all([(x["digit"], x["source"]) for x in r["dtmf"]] == [("5", "rfc4733")] for r in recs), \
        Counter(str(r["dtmf"]) for r in recs)
    rtp = [r["metadata"]["rtp"] for r in recs]
    assert all(x["received"] > 0 and x["sent"] > 0 for x in rtp), [x for x in rtp if not (x["received"] and x["sent"])]
    # sipp streamed the whole utterance to every call (137 packets of 20 ms)
    assert min(x["received"] for x in rtp) >= 130, sorted(x["received"] for x in rtp)[:5]
    assert all(r["turns"] and r["turns"][0]["speaker"] == "bot" for r in recs)
    print(f"load: {CALLS} calls, {CONCURRENT} at once; media clock late ticks {late}; "
          f"rtp sent per call min {min(x['sent'] for x in rtp)}")
