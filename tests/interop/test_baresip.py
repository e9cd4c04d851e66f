"""Real SIP calls from baresip (a third-party softphone) into the daemon.

baresip runs headless: its microphone is a WAV file (aufile), its sndfile module
records what it sent (`dump-*-enc.wav`) and what it heard (`dump-*-dec.wav`), and
the test drives it over ctrl_tcp (dial, RFC 4733 digits with `sndcode`). The
daemon runs in this process with the offline engines, so the assertions can read
both the recordings and the call records.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import numpy as np
import pytest

from tests.interop.sipd import (
    SPEECH,
    baresip_available,
    baresip_call,
    call_records,
    make_wav,
    onset_s,
    read_wav,
    running_daemon,
    silence_from_s,
    voiced_spans,
)
from voxd.media.audio import read_wav_as

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not baresip_available(), reason="baresip (baresip-core) not installed"),
]

RTP = (32000, 32100)

GREETER = """
greeting: Hello! Ask me the time.
voice: {engine: espeak}
turn: {detector: silence, max_silence_ms: 700}
tools: [get_current_time]
dialog:
  intents:
    - {name: time, examples: ["what time is it"], keywords: [time], tool: get_current_time, reply: "It's {result.spoken}."}
sip: {numbers: ["100"]}
"""

# One long sentence with no commas: espeak leaves no pause long enough to look like
# the bot stopping on its own while the caller barges in.
TALKER = """
greeting: Thanks for calling the voxd test line where every single call is answered by a robot that keeps on talking for quite a long time so that you can interrupt it whenever you like.
voice: {engine: espeak}
sip: {numbers: ["200"]}
"""


def words(text: str) -> set[str]:
    return set(re.findall(r"[a-z']+", text.lower()))


def transcribe(path: Path, start_s: float, end_s: float) -> str:
    from voxd.providers.stt.whisper import WhisperSTT

    pcm = read_wav_as(path, 16000)[int(start_s * 16000): int(end_s * 16000)]
    return WhisperSTT().transcribe_sync(np.ascontiguousarray(pcm))


@pytest.mark.timeout(120)
async def test_greeting_reply_and_rfc4733_digit(tmp_path: Path) -> None:
    # quiet through the greeting, then a question (flite voice), then room for the reply
    caller = await make_wav(tmp_path / "caller.wav", ("silence", 4.0),
                            (str(SPEECH / "flite-slt" / "what_time.8k.wav"), 10.0))
    async with running_daemon(tmp_path, {"greeter": GREETER}, RTP) as d:
        b = await baresip_call(tmp_path / "baresip", caller, f"sip:100@127.0.0.1:{d.sip.port}",
                               digits=((13.0, "7"),), timeout_s=40)
        (rec,) = await call_records(d)

    enc, dec = b.recordings()
    heard, rate = read_wav(dec)
    sent, _ = read_wav(enc)
    spans = voiced_spans(heard, rate)
    assert spans, "the recording of what baresip heard is silent"
    assert float(np.abs(heard).max()) > 3000
    # the greeting is the bot audio before the caller speaks (at 4 s)
    assert spans[0][0] < 1.5, spans
    g_end = max(e for s, e in spans if s < 3.5)
    text = await asyncio.to_thread(transcribe, dec, 0.0, g_end + 0.3)
    assert {"hello", "ask", "time"} <= words(text), text
    # the reply comes after the caller's question, and baresip heard it
    question = voiced_spans(sent, rate)
    assert question, "baresip sent no speech"
    q_end = question[-1][1]
    assert any(s > q_end for s, _ in spans), (question, spans)

    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert said[0] == ("bot", "Hello! Ask me the time.")
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said
    assert [tc["name"] for t in rec["turns"] for tc in t["tool_calls"]] == ["get_current_time"]
    assert [(x["digit"], x["source"]) for x in rec["dtmf"]] == [("7", "rfc4733")]
    assert rec["end_reason"] == "caller_hangup" and rec["ended_by"] == "caller"
    assert rec["metadata"]["codec"] == "PCMU"
    rtp = rec["metadata"]["rtp"]
    assert rtp["received"] > 500 and rtp["sent"] > 500, rtp
    # RTCP both ways: baresip's reports about our stream echo our sender reports (RTT)
    rtcp = rtp["rtcp"]
    assert rtcp["sent"] >= 2 and rtcp["received"] >= 1, rtcp
    assert rtcp["peer"]["reports"] >= 1 and rtcp["peer"]["rtt_ms"] is not None, rtcp


@pytest.mark.timeout(120)
async def test_barge_in_stops_bot_audio(tmp_path: Path) -> None:
    # the caller starts talking two seconds into a ten-second greeting
    caller = await make_wav(tmp_path / "caller.wav", ("silence", 2.0),
                            (str(SPEECH / "festival-kal" / "speak_to_sales.8k.wav"), 4.0))
    async with running_daemon(tmp_path, {"talker": TALKER}, RTP) as d:
        b = await baresip_call(tmp_path / "baresip", caller, f"sip:200@127.0.0.1:{d.sip.port}", timeout_s=40)
        (rec,) = await call_records(d)

    first = rec["turns"][0]
    assert first["speaker"] == "bot" and first["source"] == "greeting"
    assert first["interrupted"] is True, first
    assert first["barge_in_ms"] is not None and 0 <= first["barge_in_ms"] < 1000, first
    assert first["heard_text"] and first["text"].startswith(first["heard_text"]), first
    assert len(first["heard_text"]) < len(first["text"])
    assert rec["interruptions"] >= 1

    enc, dec = b.recordings()
    sent, rate = read_wav(enc)
    heard, _ = read_wav(dec)
    onset = onset_s(sent, rate, after_s=1.0)
    assert onset is not None, "no caller speech in what baresip sent"
    # the bot was talking when the caller started...
    assert float(np.abs(heard[int((onset - 0.5) * rate): int(onset * rate)]).max()) > 3000
    # ...and went quiet soon after (the greeting alone would go on for about ten seconds)
    stop = silence_from_s(heard, rate, after_s=onset - 0.1, hold_ms=400)
    assert stop is not None
    latency_ms = (stop - onset) * 1000
    print(f"barge-in from the recordings: caller onset {onset:.2f} s -> bot silent {stop:.2f} s = "
          f"{latency_ms:.0f} ms (voxd's own barge_in_ms {first['barge_in_ms']})")
    assert latency_ms < 1000, latency_ms
