"""whisper tiny.en hears callers spoken by engines other than the agent's voice."""

from __future__ import annotations

import numpy as np
import pytest

from voxd.media.audio import FRAME_BYTES
from voxd.media.frame import AudioFrame, split_frames
from voxd.providers.base import ProviderError, STTStream
from voxd.providers.stt.whisper import WhisperSTT, clean_text, is_hallucination

from . import speech

pytestmark = pytest.mark.engines


def push_all(stream: STTStream, pcm: bytes) -> None:
    for frame in split_frames(pcm):
        stream.push(frame)


SLUGS = ("twelve_times_seven", "speak_to_sales")


async def test_transcribes_telephone_callers(stt: WhisperSTT) -> None:
    heard: dict[str, list[tuple[str, str]]] = {}
    hits = total = 0
    for voice in speech.voices():
        for slug in SLUGS:
            stream = stt.stream()
            push_all(stream, speech.load(voice, slug, 8000).tobytes())
            text = await stream.finalize()
            heard.setdefault(voice, []).append((speech.text_of(slug), text))
            hits += speech.has_key_words(slug, text)
            total += 1
    report = {v: (round(speech.wer(p), 2), [h for _, h in p]) for v, p in heard.items()}
    assert hits / total >= 0.8, report
    assert speech.wer([p for ps in heard.values() for p in ps]) < 0.25, report
    for voice in ("piper-joe", "flite-slt", "flite-rms"):
        assert speech.wer(heard[voice]) < 0.35, report


async def test_wideband_caller(stt: WhisperSTT) -> None:
    stream = stt.stream()
    push_all(stream, speech.load("flite-awb", "book_tuesday", 16000).tobytes())
    text = await stream.finalize()
    assert speech.has_key_words("book_tuesday", text), text


async def test_stream_turns_and_reset(stt: WhisperSTT) -> None:
    stream = stt.stream()
    pcm = speech.load("flite-rms", "what_time").tobytes()
    for i in range(0, len(pcm), FRAME_BYTES):  # as the session feeds it: 20 ms frames
        stream.push(AudioFrame(pcm[i : i + FRAME_BYTES]))
    assert "time" in speech.normalize(await stream.finalize())
    assert await stream.finalize() == ""  # finalize started a new, empty utterance
    push_all(stream, speech.load("flite-rms", "yes").tobytes())
    stream.reset()
    push_all(stream, speech.load("flite-rms", "goodbye").tobytes())
    assert speech.normalize(await stream.finalize()) in (["goodbye"], ["good", "bye"])
    await stream.aclose()


async def test_silence_and_noise_are_not_speech(stt: WhisperSTT) -> None:
    rng = np.random.default_rng(7)
    for audio in (
        np.zeros(16_000, dtype=np.int16),
        (rng.standard_normal(16_000) * 30).astype(np.int16),  # -60 dBFS line hiss
        (rng.standard_normal(24_000) * 1000).astype(np.int16),  # -30 dBFS white noise
    ):
        stream = stt.stream()
        push_all(stream, audio.tobytes())
        assert await stream.finalize() == ""


def test_hallucination_filter() -> None:
    assert is_hallucination("Thank you.", voiced_s=0.1)
    assert is_hallucination(" you", voiced_s=0.0)
    assert not is_hallucination("Thank you.", voiced_s=0.8)  # a caller may say it
    assert not is_hallucination("What time is it?", voiced_s=0.1)
    assert clean_text(" [BLANK_AUDIO] (coughs)  Hello   there ♪") == "Hello there"


def test_never_downloads_a_model() -> None:
    with pytest.raises(ProviderError) as e:
        WhisperSTT("base.en")
    assert not e.value.retryable
