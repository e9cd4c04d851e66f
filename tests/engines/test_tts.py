"""piper and espeak speak audibly, stream, and are understood when heard back."""

from __future__ import annotations

from collections.abc import AsyncGenerator
from typing import cast

import numpy as np
import pytest

from voxd.media.audio import dbfs
from voxd.media.frame import AudioChunk, split_frames
from voxd.providers.base import ProviderError, TextToSpeech
from voxd.providers.stt.whisper import WhisperSTT
from voxd.providers.tts.espeak import EspeakTTS
from voxd.providers.tts.piper import PiperTTS, split_clauses

from . import speech

pytestmark = pytest.mark.engines


async def collect(tts: TextToSpeech, text: str) -> list[bytes]:
    return [chunk.pcm async for chunk in tts.synthesize(text)]


async def heard_back(stt: WhisperSTT, tts: TextToSpeech, pcm: bytes) -> list[str]:
    """What whisper hears when the bot's audio crosses an 8 kHz telephone line."""
    line = speech.telephone(np.frombuffer(pcm, dtype="<i2"), tts.sample_rate)
    stream = stt.stream()
    for frame in split_frames(line.tobytes()):
        stream.push(frame)
    return speech.normalize(await stream.finalize())


async def test_piper_streams_clauses_whisper_understands(stt: WhisperSTT) -> None:
    tts = PiperTTS()
    assert tts.sample_rate == 22_050
    chunks = await collect(tts, "Sure, let me check that for you. Twelve times seven is eighty four.")
    assert len(chunks) == 2  # one chunk per clause, the first yielded before the rest is made
    assert dbfs(chunks[0]) > -35 and dbfs(chunks[1]) > -35
    words = await heard_back(stt, tts, chunks[1])
    assert {"twelve", "seven", "eighty", "four"} <= set(words), words


async def test_piper_speed_changes_length() -> None:
    normal = b"".join(await collect(PiperTTS(), "Your table is ready."))
    fast = b"".join(await collect(PiperTTS(speed=1.5), "Your table is ready."))
    assert len(fast) < 0.85 * len(normal)


async def test_espeak_speaks_and_whisper_understands(stt: WhisperSTT) -> None:
    tts = EspeakTTS("en-us")
    chunks = await collect(tts, "The time is ten past four. Your appointment is on Tuesday.")
    assert tts.sample_rate == 22_050 and len(chunks) > 1  # streamed as it is made
    pcm = b"".join(chunks)
    assert dbfs(pcm) > -35
    words = await heard_back(stt, tts, pcm)
    assert {"time", "ten", "past", "four", "appointment", "tuesday"} <= set(words), words


async def test_espeak_stops_when_the_listener_goes_away() -> None:
    tts = EspeakTTS(speed=1.2)
    agen = cast(AsyncGenerator[AudioChunk, None], tts.synthesize("This is interrupted. " * 40))
    first = (await agen.__anext__()).pcm
    await agen.aclose()  # barge-in: the session cancels the iterating task
    assert first
    # The engine lock was released: the next synthesis runs normally.
    assert dbfs(b"".join(await collect(tts, "Hello again."))) > -35


async def test_espeak_unknown_voice() -> None:
    with pytest.raises(ProviderError):
        await collect(EspeakTTS("xx-nope"), "hello")


def test_split_clauses() -> None:
    assert split_clauses("Hi. It's ten past four.") == ["Hi.", "It's ten past four."]
    text = "Your appointment is booked for Tuesday at three pm, and you will get a text shortly."
    assert split_clauses(text) == [
        "Your appointment is booked for Tuesday at three pm,",
        "and you will get a text shortly.",
    ]
    assert split_clauses(text, first_max_words=6)[:2] == [
        "Your appointment is booked for Tuesday",
        "at three pm,",
    ]
    assert split_clauses("Well, yes.") == ["Well, yes."]
    assert split_clauses("  ") == []


def test_piper_never_downloads_a_voice() -> None:
    with pytest.raises(ProviderError) as e:
        PiperTTS("en_GB-alan-low")
    assert not e.value.retryable
