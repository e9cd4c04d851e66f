"""Caller speech for test scenarios, synthesised with a local voice.

``flite:<slt|kal|awb|rms>`` (Debian flite), ``festival:kal`` (text2wave),
``espeak:<voice>`` (espeak-ng) and ``piper:joe`` (the bundled piper voice). The audio
goes through an 8 kHz G.711 mu-law round trip, as a phone line would carry it, and is
returned at the pipeline's 16 kHz. Results are cached on disk by voice and text.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import tempfile
import wave
from pathlib import Path

import numpy as np

from voxd.media.audio import SAMPLE_RATE, read_wav, resample, write_wav
from voxd.proto.g711 import ulaw_decode, ulaw_encode

PAD_S = 0.2  # silence before the words


class VoiceUnavailable(RuntimeError):
    pass


def cache_dir() -> Path:
    base = os.environ.get("VOXD_TEST_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "voxd", "test-speech")
    return Path(base)


def _tool(name: str, voice: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VoiceUnavailable(f"voice {voice}: {name} is not installed (apt-get install flite festival espeak-ng)")
    return path


def _synth_raw(voice: str, text: str, out: Path) -> None:
    engine, _, name = voice.partition(":")
    if engine == "flite":
        subprocess.run([_tool("flite", voice), "-voice", name or "slt", "-t", text, "-o", str(out)],
                       check=True, capture_output=True, timeout=60)
    elif engine == "festival":
        subprocess.run([_tool("text2wave", voice), "-o", str(out)], input=text.encode(), check=True,
                       capture_output=True, timeout=60)
    elif engine == "espeak":
        subprocess.run([_tool("espeak-ng", voice), "-v", name or "en-us", "-w", str(out), text], check=True,
                       capture_output=True, timeout=60)
    elif engine == "piper":
        from piper import PiperVoice

        from voxd.providers.tts.piper import resolve_voice

        pv = PiperVoice.load(str(resolve_voice(None if name == "joe" else name)))
        with wave.open(str(out), "wb") as w:
            pv.synthesize_wav(text, w)
    else:
        raise VoiceUnavailable(f"unknown voice {voice!r}")


def telephone(pcm: np.ndarray, rate: int) -> np.ndarray:
    """Audio as an 8 kHz mu-law line carries it, back at 16 kHz."""
    narrow = resample(pcm, rate, 8000)
    wide: np.ndarray = resample(ulaw_decode(ulaw_encode(narrow)), 8000, SAMPLE_RATE)
    return wide


def _normalise(pcm: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(pcm))) if pcm.size else 0.0
    if peak < 1:
        return pcm
    out: np.ndarray = np.clip(pcm.astype(np.float32) * (0.7 * 32767 / peak), -32768, 32767).astype(np.int16)
    return out


def speech(voice: str, text: str) -> np.ndarray:
    """``text`` spoken by ``voice``: 16 kHz int16, telephone band, PAD_S of silence first."""
    key = hashlib.sha256(f"{voice}\n{text}\nv1".encode()).hexdigest()[:20]
    cached = cache_dir() / f"{key}.wav"
    if cached.is_file():
        pcm, _ = read_wav(cached)
        return pcm
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        try:
            _synth_raw(voice, text, raw)
        except subprocess.SubprocessError as e:
            raise VoiceUnavailable(f"voice {voice} failed on {text!r}: {e}") from None
        if not raw.is_file() or raw.stat().st_size <= 44:
            hint = " (festival has no voice: apt-get install festvox-kallpc16k)" if voice.startswith("festival") else ""
            raise VoiceUnavailable(f"voice {voice} produced no audio for {text!r}{hint}")
        pcm, rate = read_wav(raw)
    out = telephone(_normalise(pcm), rate)
    out = np.concatenate([np.zeros(int(PAD_S * SAMPLE_RATE), np.int16), out])
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        tmpname = cached.with_suffix(f".{os.getpid()}.tmp")
        write_wav(tmpname, out, SAMPLE_RATE)
        tmpname.replace(cached)
    except OSError:
        pass  # a read-only home: synthesise again next time
    return out


def speech_with_pauses(voice: str, parts: list[str], pause_ms: int) -> np.ndarray:
    """Parts spoken one after another with ``pause_ms`` of silence between them."""
    gap = np.zeros(int(pause_ms * SAMPLE_RATE / 1000), np.int16)
    chunks: list[np.ndarray] = []
    for i, part in enumerate(parts):
        pcm = speech(voice, part)
        if i:
            pcm = _trim_lead(pcm)
            chunks.append(gap)
        chunks.append(_trim_tail(pcm) if i < len(parts) - 1 else pcm)
    return np.concatenate(chunks)


def _voiced(pcm: np.ndarray) -> np.ndarray:
    return np.flatnonzero(np.abs(pcm.astype(np.int32)) > 300)


def _trim_lead(pcm: np.ndarray) -> np.ndarray:
    idx = _voiced(pcm)
    return pcm[max(0, int(idx[0]) - 160):] if idx.size else pcm


def _trim_tail(pcm: np.ndarray) -> np.ndarray:
    idx = _voiced(pcm)
    return pcm[: int(idx[-1]) + 160] if idx.size else pcm
