"""A real daemon in-process for transport tests: fake speech engines, the dialog
engine, HTTP on a free port, no SIP, no model loading."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from voxd.app import Daemon
from voxd.config import VoxdConfig


def time_agent(max_silence_ms: int = 400) -> str:
    """Answers "what time is it" with the time tool; fake STT hears exactly that."""
    return f"""
greeting: Hello and welcome.
stt: {{engine: fake, options: {{transcripts: ["what time is it"]}}}}
llm: {{engine: dialog}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: {max_silence_ms}}}
tools: [get_current_time]
dialog:
  intents:
    - {{name: time, examples: ["what time is it"], tool: get_current_time, reply: "It's {{result.spoken}}."}}
"""


def talker_agent(max_silence_ms: int = 400) -> str:
    """A long greeting, so a caller has time to talk over it."""
    return f"""
greeting: "Thanks for calling the test line. This greeting is long on purpose, so that a caller has plenty of time to talk over it and interrupt the bot."
stt: {{engine: fake, options: {{transcripts: ["stop talking"]}}}}
llm: {{engine: dialog}}
voice: {{engine: fake}}
turn: {{detector: silence, max_silence_ms: {max_silence_ms}}}
"""


async def start_daemon(tmp_path: Path, agents: dict[str, str], **config: Any) -> Daemon:
    folder = tmp_path / "agents"
    folder.mkdir(exist_ok=True)
    for name, text in agents.items():
        (folder / f"{name}.yaml").write_text(text)
    # tests call /media/* on loopback without credentials unless they say otherwise
    http = {"port": 0, "media_unauthenticated": True, **config.pop("http", {})}
    cfg = VoxdConfig.model_validate({
        "state_dir": str(tmp_path / "state"), "agents_dir": str(folder),
        "http": http, "sip": {"enabled": False}, "engines": {"silero_confirm": False, "preload": False},
        **config,
    })
    d = Daemon(cfg, tmp_path)
    await d.start()
    return d


# voxd.yaml blocks that let a daemon under test reach fake vendors on 127.0.0.1 with their keys
LOCAL_VENDORS: dict[str, Any] = {
    "egress": {"allow": [{"networks": ["127.0.0.1/32"], "uses": ["providers"]}]},
    "secrets": {"deepgram": {"env": "DEEPGRAM_API_KEY", "hosts": ["api.deepgram.com", "127.0.0.1"]},
                "openai": {"env": "OPENAI_API_KEY", "hosts": ["api.openai.com", "127.0.0.1"]},
                "elevenlabs": {"env": "ELEVENLABS_API_KEY", "hosts": ["api.elevenlabs.io", "127.0.0.1"]}},
}
