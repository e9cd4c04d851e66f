"""The recording timeline and its files: alignment, overlap, gaps, flushing, crash-readability."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from voxd.media.recording import RATE, OggOpusWriter, Timeline, WavWriter, open_writer

FRAME = RATE // 50


def tone(freq: float, n: int = FRAME, amp: int = 8000, start: int = 0) -> bytes:
    t = np.arange(start, start + n)
    return (np.sin(2 * np.pi * freq * t / RATE) * amp).astype("<i2").tobytes()


def read_wav(path: Path) -> tuple[int, np.ndarray]:
    with wave.open(str(path)) as w:
        ch = w.getnchannels()
        assert w.getframerate() == RATE and w.getsampwidth() == 2
        data = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2")
    return ch, data.reshape(-1, ch)


def test_frames_land_at_their_media_time_on_their_own_channel(tmp_path: Path) -> None:
    path = tmp_path / "a.wav"
    tl = Timeline(WavWriter(path, 2))
    caller = [tone(440, start=i * FRAME) for i in range(100)]  # 2 s of caller
    for i, f in enumerate(caller):
        tl.place(0, i * 0.02, f)
        if 25 <= i < 75:  # the bot speaks from 0.5 s to 1.5 s, from its own clock position
            tl.place(1, i * 0.02, tone(1000, start=i * FRAME, amp=5000))
    tl.close()
    ch, x = read_wav(path)
    assert ch == 2 and len(x) == 100 * FRAME
    assert np.array_equal(x[:, 0].tobytes(), b"".join(caller))
    bot = x[:, 1]
    assert not bot[:25 * FRAME].any() and not bot[75 * FRAME:].any()  # silence where the bot was silent
    assert np.array_equal(bot[25 * FRAME:75 * FRAME].tobytes(),
                          b"".join(tone(1000, start=i * FRAME, amp=5000) for i in range(25, 75)))
    # barge-in overlap: both channels carry sound at once between 0.5 and 1.5 s
    mid = x[30 * FRAME:70 * FRAME]
    assert np.abs(mid[:, 0]).max() > 7000 and np.abs(mid[:, 1]).max() > 4000


def test_a_gap_in_the_callers_frames_is_silence_and_the_clock_is_the_callers(tmp_path: Path) -> None:
    path = tmp_path / "gap.wav"
    tl = Timeline(WavWriter(path, 2))
    for i in range(50):
        if 10 <= i < 20:
            continue  # nothing arrived for 200 ms
        tl.place(0, i * 0.02, tone(300))
    tl.close()
    _, x = read_wav(path)
    assert len(x) == 50 * FRAME
    assert not x[10 * FRAME:20 * FRAME].any()
    assert x[20 * FRAME:21 * FRAME, 0].any()


def test_late_frames_beyond_the_margin_are_dropped_not_misplaced(tmp_path: Path) -> None:
    path = tmp_path / "late.wav"
    tl = Timeline(WavWriter(path, 2))
    for i in range(100):
        tl.place(0, i * 0.02, tone(300))
    tl.flush()  # written up to 2.0 s - margin
    tl.place(1, 0.2, tone(1000))  # a bot frame for 0.2 s arriving now: too late to be heard there
    tl.close()
    _, x = read_wav(path)
    assert tl.dropped == FRAME
    assert not x[:, 1].any()


def test_mono_mixes_both_sides_with_clipping(tmp_path: Path) -> None:
    path = tmp_path / "m.wav"
    tl = Timeline(WavWriter(path, 1), channels="mono")
    full = np.full(FRAME, 30000, dtype="<i2").tobytes()
    tl.place(0, 0.0, full)
    tl.place(1, 0.0, full)
    tl.place(0, 0.02, tone(440))
    tl.close()
    ch, x = read_wav(path)
    assert ch == 1 and len(x) == 2 * FRAME
    assert (x[:FRAME, 0] == 32767).all()
    assert np.array_equal(x[FRAME:, 0].tobytes(), tone(440))


def test_memory_stays_the_window_however_long_the_call(tmp_path: Path) -> None:
    tl = Timeline(WavWriter(tmp_path / "long.wav", 2))
    size = tl._buf.nbytes
    for i in range(30 * 50):  # 30 s
        tl.place(0, i * 0.02, tone(200))
        tl.place(1, i * 0.02, tone(900))
    assert tl._buf.nbytes == size
    assert tl.samples_written >= 29 * RATE  # flushed as it went
    tl.close()
    assert (tmp_path / "long.wav").stat().st_size == 44 + 30 * RATE * 4


def test_the_wav_header_covers_what_each_flush_wrote(tmp_path: Path) -> None:
    path = tmp_path / "f.wav"
    w = WavWriter(path, 2)
    tl = Timeline(w)
    for i in range(60):
        tl.place(0, i * 0.02, tone(500))
    # 1.2 s placed: one flush happened at 1.0 s (up to 0.9 s); the file reads to there now
    _ch, x = read_wav(path)
    assert len(x) == int(0.9 * RATE)
    tl.close()
    assert len(read_wav(path)[1]) == 60 * FRAME


WRITER = """
import sys, time
import numpy as np
from pathlib import Path
from voxd.media.recording import Timeline, open_writer
path, fmt = Path(sys.argv[1]), sys.argv[2]
tl = Timeline(open_writer(path, fmt, "stereo"))
t = np.arange(320)
for i in range(100000):
    pcm = (np.sin(2 * np.pi * 440 * (t + i * 320) / 16000) * 8000).astype("<i2").tobytes()
    tl.place(0, i * 0.02, pcm)
    tl.place(1, i * 0.02, pcm)
    if i == 50 * 3:
        print("3s", flush=True)
    time.sleep(0.001)
"""


@pytest.mark.parametrize("fmt", ["wav", "opus"])
def test_a_writer_killed_with_sigkill_leaves_a_readable_file(tmp_path: Path, fmt: str) -> None:
    path = tmp_path / ("k.wav" if fmt == "wav" else "k.ogg")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    with subprocess.Popen([sys.executable, "-c", WRITER, str(path), fmt], stdout=subprocess.PIPE, env=env) as proc:
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline().strip() == b"3s"
            time.sleep(0.3)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    if fmt == "wav":
        _, x = read_wav(path)
        assert len(x) >= 2 * RATE  # to the last flushed second
        expect = np.frombuffer(tone(440, n=len(x)), dtype="<i2")
        assert np.array_equal(x[:, 0], expect) and np.array_equal(x[:, 1], expect)
    else:
        assert decoded_seconds(path) >= 1.9


def decoded_seconds(path: Path) -> float:
    n = 0
    with av.open(str(path)) as c:
        s = c.streams.audio[0]
        try:
            for frame in c.decode(s):
                n += frame.samples
                rate = frame.sample_rate
        except av.error.InvalidDataError:
            pass  # a cut last page
    return n / rate


def test_opus_in_ogg_decodes_to_the_length_and_the_sides_written(tmp_path: Path) -> None:
    path = tmp_path / "o.ogg"
    tl = Timeline(open_writer(path, "opus", "stereo"))
    assert isinstance(tl.writer, OggOpusWriter)
    for i in range(150):  # 3 s: caller tone, bot silent
        tl.place(0, i * 0.02, tone(440, start=i * FRAME))
    tl.close()
    with av.open(str(path)) as c:
        assert c.format.name == "ogg"
        s = c.streams.audio[0]
        assert s.codec_context.name == "opus" and s.channels == 2
        pcm = np.concatenate([f.to_ndarray().reshape(-1, 2) if f.format.is_packed else f.to_ndarray().T
                              for f in c.decode(s)])
    assert abs(len(pcm) / 48000 - 3.0) < 0.1
    left, right = np.abs(pcm[:, 0]).mean(), np.abs(pcm[:, 1]).mean()
    assert left > 10 * max(right, 1e-6)


def test_a_truncated_ogg_still_plays_its_complete_pages(tmp_path: Path) -> None:
    path = tmp_path / "t.ogg"
    tl = Timeline(open_writer(path, "opus", "mono"), channels="mono")
    for i in range(250):  # 5 s
        tl.place(0, i * 0.02, tone(440, start=i * FRAME))
    tl.close()
    data = path.read_bytes()
    cut = tmp_path / "cut.ogg"
    cut.write_bytes(data[: len(data) // 2])
    assert 1.5 < decoded_seconds(cut) < 4.0
