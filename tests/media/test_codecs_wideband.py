"""G.722 and Opus codec objects (PyAV): a tone goes through encode and decode with its
frequency and energy, at 16 kHz; G.722 packs 160 bytes a 20 ms frame."""

from __future__ import annotations

import numpy as np
import pytest

from voxd.media import codecs
from voxd.media.audio import FRAME_SAMPLES, SAMPLE_RATE
from voxd.media.codecs.base import Codec
from voxd.media.frame import AudioFrame

FRAMES = 50  # one second


def tone(hz: float, amplitude: float = 8000.0, frames: int = FRAMES) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / SAMPLE_RATE
    return (amplitude * np.sin(2 * np.pi * hz * t)).astype("<i2")


def round_trip(codec: Codec, pcm: np.ndarray) -> tuple[list[bytes], np.ndarray]:
    enc, dec = codec.encoder(), codec.decoder()
    payloads, out = [], []
    for i in range(len(pcm) // FRAME_SAMPLES):
        payload = enc.encode(AudioFrame(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes()))
        payloads.append(payload)
        out.append(dec.decode_packet(payload).pcm)
    return payloads, np.frombuffer(b"".join(out), "<i2")


def peak_hz(x: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(x.astype(np.float64) * np.hanning(len(x))))
    return float(np.argmax(spectrum)) * SAMPLE_RATE / len(x)


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)))


@pytest.mark.parametrize("name", ["G722", "opus"])
@pytest.mark.parametrize("hz", [440.0, 1000.0, 5000.0, 6500.0])
def test_a_tone_keeps_its_frequency_and_energy(name: str, hz: float) -> None:
    """5 and 6.5 kHz lie above what 8 kHz audio can hold: they survive only wideband."""
    pcm = tone(hz)
    _, out = round_trip(codecs.get(name), pcm)
    assert len(out) == len(pcm)
    steady = out[10 * FRAME_SAMPLES:]  # past the codecs' start-up delay
    assert abs(peak_hz(steady) - hz) <= 20, peak_hz(steady)
    ratio = rms(steady) / rms(pcm)
    assert 0.7 < ratio < 1.3, ratio


def test_g722_is_160_bytes_a_frame_on_an_8000_rtp_clock() -> None:
    g722 = codecs.get("g722")
    assert (g722.name, g722.clock_rate, g722.rtp_samples, g722.payload_bytes) == ("G722", 8000, 160, 160)
    payloads, _ = round_trip(g722, tone(1000.0, frames=10))
    assert [len(p) for p in payloads] == [160] * 10
    assert len(g722.silence()) == 160


def test_opus_is_48000_on_the_wire_and_small() -> None:
    opus = codecs.get("OPUS")
    assert (opus.name, opus.clock_rate, opus.rtp_samples, opus.payload_bytes) == ("opus", 48000, 960, 0)
    payloads, _ = round_trip(opus, tone(1000.0))
    assert all(0 < len(p) <= 200 for p in payloads), [len(p) for p in payloads]  # ~32 kbit/s: 80 bytes
    assert 0 < len(opus.silence()) < 20


def test_g722_is_deterministic_and_a_reset_restarts_it() -> None:
    """The same input through a second encoder gives the same bytes (the codec is
    deterministic and keeps no state across objects), and a reset restarts it."""
    pcm = tone(800.0, frames=5)
    a, _ = round_trip(codecs.get("G722"), pcm)
    b, _ = round_trip(codecs.get("G722"), pcm)
    assert a == b
    enc = codecs.get("G722").encoder()
    frame = AudioFrame(pcm[:FRAME_SAMPLES].tobytes())
    first = enc.encode(frame)
    enc.encode(frame)
    enc.reset()
    assert enc.encode(frame) == first


def test_garbage_decodes_to_silence_not_an_exception() -> None:
    dec = codecs.get("opus").decoder()
    frame = dec.decode_packet(b"\xff\xff\xff\xff\x00")
    assert len(frame.pcm) == FRAME_SAMPLES * 2


def test_streaming_decode_gives_whole_frames() -> None:
    codec = codecs.get("opus")
    enc, dec = codec.encoder(), codec.decoder()
    pcm = tone(1000.0, frames=20)
    frames = []
    for i in range(20):
        frames += dec.decode(enc.encode(AudioFrame(pcm[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES].tobytes())))
    assert 18 <= len(frames) <= 20 and all(len(f.pcm) == FRAME_SAMPLES * 2 for f in frames)
