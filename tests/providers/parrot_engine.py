"""A throwaway speech recogniser, complete in this one module: its options model, its
factory and its prices register it (voxd.providers.engines); agent YAML can then name it."""

from __future__ import annotations

from voxd.agents.schema import STTConfig
from voxd.media.frame import AudioFrame
from voxd.providers.base import SpeechToText, STTStream
from voxd.providers.engines import BuildContext, EngineSpec, Options, register


class ParrotOptions(Options):
    transcript: str = "hello"
    shout: bool = False


class ParrotStream(STTStream):
    def __init__(self, text: str) -> None:
        self.text = text

    def push(self, frame: AudioFrame) -> None:
        pass

    async def finalize(self) -> str:
        return self.text

    def reset(self) -> None:
        pass


class ParrotSTT(SpeechToText):
    name = "parrot"

    def __init__(self, text: str, language: str) -> None:
        self.text = text
        self.language = language

    def stream(self, carried: str | None = None) -> STTStream:
        return ParrotStream(self.text)


def build(cfg: STTConfig, opts: ParrotOptions, ctx: BuildContext) -> ParrotSTT:
    return ParrotSTT(opts.transcript.upper() if opts.shout else opts.transcript, cfg.language)


SPEC = register(EngineSpec("stt", "parrot", build, options=ParrotOptions, prices={"audio_s": 0.25}))
