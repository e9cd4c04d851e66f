"""A G.722 call from baresip (g722.so) into the daemon, on a trunk that prefers G.722
(and an Opus call from baresip's opus.so on one that prefers Opus: negotiated, audio both ways).

baresip offers PCMU first and G.722 second; the trunk's `codecs: [G722, PCMU]` makes
voxd answer G.722 (payload type 9, rtpmap G722/8000). Both ways must carry audio and
be wideband: baresip's microphone ends with a 6 kHz tone, which no 8 kHz path can
carry, and the call recording's caller track (what the pipeline, and so the
recogniser, got at 16 kHz) has it; what baresip heard from the bot (its 16 kHz
recording) has speech energy above 4 kHz. The greeting transcribes back, and the
caller's question reaches the agent's STT and gets the tool's reply.
"""

from __future__ import annotations

import asyncio
import wave
from pathlib import Path

import numpy as np
import pytest

from tests.interop.sipd import (
    SPEECH,
    baresip_available,
    baresip_call,
    call_records,
    read_wav,
    run_checked,
    running_daemon,
    voiced_spans,
)
from tests.interop.test_baresip import GREETER, transcribe, words

pytestmark = [
    pytest.mark.interop,
    pytest.mark.skipif(not baresip_available() or not Path("/usr/lib/baresip/modules/g722.so").exists(),
                       reason="baresip with g722.so (baresip-core) not installed"),
]

RTP = (32500, 32599)
RATE = 16000
TONE_HZ = 6000
TONE_AT_S = 13.5  # after the question (at 4 s) and the reply
AGENT = GREETER.replace('sip: {numbers: ["100"]}', 'recording: {enabled: true, channels: stereo, format: wav}\n'
                        'sip: {numbers: ["100"]}')
G722_MODULES = "module\t\t\tg722.so\n"


async def caller_wav(out: Path) -> Path:
    """16 kHz: 4 s of silence, a question (flite), a 1 s 6 kHz tone at TONE_AT_S, 3 s of silence."""
    question = SPEECH / "flite-slt" / "what_time.16k.wav"
    parts = [out.parent / f".{out.stem}.{i}.wav" for i in range(4)]
    fmt = ["-r", str(RATE), "-c", "1", "-b", "16", "-e", "signed"]
    await run_checked(["sox", "-n", *fmt, str(parts[0]), "trim", "0", "4"])
    await run_checked(["sox", str(question), *fmt, str(parts[1])])
    with wave.open(str(parts[1])) as w:
        spoken = w.getnframes() / w.getframerate()
    await run_checked(["sox", "-n", *fmt, str(parts[2]), "trim", "0", str(TONE_AT_S - 4 - spoken)])
    await run_checked(["sox", "-n", *fmt, str(parts[3]), "synth", "1", "sine", str(TONE_HZ), "vol", "0.3",
                       "pad", "0", "3"])
    await run_checked(["sox", *map(str, parts), *fmt, str(out)])
    return out


def band_share(x: np.ndarray, rate: int, low: float, high: float) -> float:
    """The share of the signal's energy between low and high Hz."""
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / rate)
    return float(spectrum[(freqs >= low) & (freqs < high)].sum() / max(spectrum.sum(), 1e-9))


@pytest.mark.timeout(150)
async def test_a_g722_call_is_wideband_both_ways(tmp_path: Path) -> None:
    question = SPEECH / "flite-slt" / "what_time.16k.wav"
    assert question.exists()
    caller = await caller_wav(tmp_path / "caller.wav")
    trunk = {"name": "lab", "allow": ["127.0.0.0/8"], "codecs": ["G722", "PCMU"]}
    async with running_daemon(tmp_path, {"greeter": AGENT}, RTP, trunks=[trunk]) as d:
        b = await baresip_call(tmp_path / "baresip", caller, f"sip:100@127.0.0.1:{d.sip.port}", timeout_s=45,
                               account="<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU,G722/16000/1",
                               extra_config=G722_MODULES, srate=RATE)
        (rec,) = await call_records(d)
        assert d.recordings is not None
        await d.recordings.flush()
        (rec,) = await call_records(d)
        recording = d.cfg.resolved_recordings() / f"{rec['id']}.wav"

    # negotiated: G.722 although baresip listed PCMU first (the trunk's preference)
    assert rec["metadata"]["codec"] == "G722"
    log = b.log()
    assert "G722" in log, log[-1500:]
    rtp = rec["metadata"]["rtp"]
    assert rtp["received"] > 500 and rtp["sent"] > 500, rtp

    # bot -> baresip: heard, transcribes, and is wideband
    enc, dec = b.recordings()
    heard, rate = read_wav(dec)
    assert rate == RATE
    spans = voiced_spans(heard, rate)
    assert spans and spans[0][0] < 1.5, spans
    g_end = max(e for s, e in spans if s < 3.5)
    text = await asyncio.to_thread(transcribe, dec, 0.0, g_end + 0.3)
    assert {"hello", "ask", "time"} <= words(text), text
    greeting = heard[int(spans[0][0] * rate): int(g_end * rate)]
    high = band_share(greeting, rate, 4200, 7500)
    print(f"bot speech energy heard above 4.2 kHz: {high:.4f}")
    # espeak's greeting has ~0.4% of its energy there at 16 kHz; through an 8 kHz path and
    # G.722 it would be ~0.003% (measured offline), so 0.1% tells the two apart
    assert high > 0.001, high

    # baresip -> the pipeline: the question reached STT and got the reply ...
    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert said[0] == ("bot", "Hello! Ask me the time.")
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said
    assert [tc["name"] for t in rec["turns"] for tc in t["tool_calls"]] == ["get_current_time"]
    # ... and at 16 kHz: the caller track of the recording holds the 6 kHz tone
    with wave.open(str(recording)) as w:
        assert (w.getframerate(), w.getnchannels()) == (RATE, 2)
        track = np.frombuffer(w.readframes(w.getnframes()), "<i2").reshape(-1, 2)[:, 0]
    sent, _ = read_wav(enc)
    tone_sent = band_share(sent[int((TONE_AT_S + 0.1) * RATE): int((TONE_AT_S + 0.9) * RATE)], RATE, 5800, 6200)
    assert tone_sent > 0.8, tone_sent  # baresip did send the tone
    loud = [i for i in range(0, len(track) - RATE // 2, RATE // 10)
            if band_share(track[i: i + RATE // 2], RATE, 5800, 6200) > 0.5
            and np.sqrt(np.mean(track[i: i + RATE // 2].astype(np.float64) ** 2)) > 500]
    print(f"recording caller track: 6 kHz tone in {len(loud)} half-second windows")
    assert loud, "the 6 kHz tone did not reach the pipeline: an 8 kHz round trip?"


@pytest.mark.timeout(120)
@pytest.mark.skipif(not Path("/usr/lib/baresip/modules/opus.so").exists(), reason="baresip opus.so not installed")
async def test_an_opus_call_carries_audio_both_ways(tmp_path: Path) -> None:
    caller = tmp_path / "caller48.wav"
    await run_checked(["sox", str(SPEECH / "flite-slt" / "what_time.16k.wav"), "-r", "48000", "-c", "1", "-b", "16",
                       "-e", "signed", str(caller), "pad", "4", "6"])
    trunk = {"name": "lab", "allow": ["127.0.0.0/8"], "codecs": ["opus", "PCMU"]}
    async with running_daemon(tmp_path, {"greeter": GREETER}, RTP, trunks=[trunk]) as d:
        b = await baresip_call(tmp_path / "baresip", caller, f"sip:100@127.0.0.1:{d.sip.port}", timeout_s=45,
                               account="<sip:caller@127.0.0.1>;regint=0;audio_codecs=PCMU,opus/48000/1",
                               extra_config="module\t\t\topus.so\nopus_stereo\t\tno\nopus_sprop_stereo\tno\n",
                               srate=48000)
        (rec,) = await call_records(d)
    assert rec["metadata"]["codec"] == "opus", b.log()[-1500:]
    rtp = rec["metadata"]["rtp"]
    assert rtp["received"] > 400 and rtp["sent"] > 400, rtp
    _, dec = b.recordings()
    heard, rate = read_wav(dec)
    spans = voiced_spans(heard, rate)
    assert spans and spans[0][0] < 1.5, spans  # the greeting reached baresip
    said = [(t["speaker"], t["text"]) for t in rec["turns"]]
    assert any(s == "caller" and "time" in t.lower() for s, t in said), said  # and its question reached STT
