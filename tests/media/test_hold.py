"""Hold audio (voxd/media/hold.py) and the hold re-offer's SDP (voxd/net/sip_hold.py)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from voxd.media.audio import FRAME_BYTES, SAMPLE_RATE, write_wav
from voxd.media.hold import PATTERN_S, HoldAudio, tone_pattern
from voxd.net.sip_hold import with_direction
from voxd.proto.negotiate import offer
from voxd.proto.sdp import SessionDescription


def rms(pcm: bytes) -> float:
    x = np.frombuffer(pcm, dtype="<i2").astype(np.float64)
    return float(np.sqrt(np.mean(x**2))) if x.size else 0.0


def test_generated_pattern_is_tones_then_silence_and_loops() -> None:
    period = tone_pattern()
    assert period.size == int(PATTERN_S * SAMPLE_RATE)
    hold = HoldAudio.load(None)
    frames = [hold.next_frame().pcm for _ in range(int(2 * PATTERN_S / 0.02))]
    assert all(len(f) == FRAME_BYTES for f in frames)
    per = int(PATTERN_S / 0.02)
    assert rms(b"".join(frames[5:25])) > 1000  # the tones
    assert rms(b"".join(frames[40:per])) == 0.0  # the quiet part
    assert frames[:per] == frames[per:]  # and again
    other = hold.fresh()
    assert other.next_frame().pcm == frames[0] and hold.frames == 2 * per


def test_a_wav_file_is_resampled_and_looped(tmp_path: Path) -> None:
    path = tmp_path / "hold.wav"
    t = np.arange(8000) / 8000  # 1 s at 8 kHz
    write_wav(path, (np.sin(2 * np.pi * 300 * t) * 6000).astype(np.int16), 8000)
    hold = HoldAudio.load(path)
    frames = [hold.next_frame().pcm for _ in range(100)]
    assert frames[:50] == frames[50:] and rms(b"".join(frames)) > 3000


def test_a_bad_file_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "nope.wav"
    bad.write_bytes(b"not a wav")
    with pytest.raises(ValueError, match=r"nope\.wav"):
        HoldAudio.load(bad)
    with pytest.raises(ValueError, match=r"missing\.wav"):
        HoldAudio.load(tmp_path / "missing.wav")


@pytest.mark.parametrize("direction", ["sendonly", "sendrecv", "inactive"])
def test_hold_reoffer_changes_only_the_direction_and_the_version(direction: str) -> None:
    ours = offer("127.0.0.1", 40000, ["PCMU"], session_id=7, session_version=3)
    again = SessionDescription.parse(with_direction(ours.serialize(), direction))
    media = again.audio()
    assert media is not None and media.direction == direction
    assert [k for k, _ in media.attributes].count(direction) == 1
    assert again.origin.split()[2] == "4" and again.origin.split()[1] == "7"
    before = ours.audio()
    assert before is not None
    assert [a for a in media.attributes if a[0] != direction] == [a for a in before.attributes if a[0] != "sendrecv"]
