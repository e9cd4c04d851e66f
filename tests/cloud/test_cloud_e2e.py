"""The offline end-to-end call (`voxd call` on recorded caller speech, real VAD and
turn model), with all three roles moved to the cloud engines, each a local fake."""

from __future__ import annotations

import asyncio
import json
import os
import re
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.cloud.fake_deepgram import FakeDeepgram
from tests.cloud.fake_elevenlabs import MS_PER_CHAR, FakeElevenLabs
from tests.cloud.fake_openai import FakeOpenAI
from tests.daemons import LOCAL_VENDORS
from voxd.media.audio import read_wav_as, write_wav

ROOT = Path(__file__).parents[2]
pytestmark = pytest.mark.engines


async def test_receptionist_on_deepgram_openai_elevenlabs(tmp_path: Path) -> None:
    dg = await FakeDeepgram({}, sequence=["What's six times seven?"]).start()
    oa = await FakeOpenAI([[("calculate", {"expression": "6*7"})], "Six times seven is 42."]).start()
    el = await FakeElevenLabs().start()
    try:
        text = (ROOT / "agents" / "receptionist.yaml").read_text()
        text = text.replace("stt:\n  engine: whisper\n  model: tiny.en", f"stt:\n  engine: deepgram\n  base_url: {dg.url}")
        text = re.sub(r"(?m)^llm:\n(?:  .*\n)+", f"llm:\n  engine: openai\n  base_url: {oa.url}\n  model: gpt-4o-mini\n", text)
        text = text.replace("voice:\n  engine: piper", f"voice:\n  engine: elevenlabs\n  voice_id: v1\n  base_url: {el.url}")
        agent = tmp_path / "cloud.yaml"
        agent.write_text(text)
        config = tmp_path / "voxd.yaml"  # the fake vendors on 127.0.0.1, allowed as an operator would
        config.write_text(json.dumps(LOCAL_VENDORS))
        speech = read_wav_as(ROOT / "tests/data/speech/festival-kal/what_time.8k.wav")
        write_wav(tmp_path / "in.wav", np.concatenate([np.zeros(16000 * 5, np.int16), speech, np.zeros(16000 * 6, np.int16)]))
        env = {**os.environ, "DEEPGRAM_API_KEY": "dg-k", "OPENAI_API_KEY": "sk-k", "ELEVENLABS_API_KEY": "xi-k"}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "voxd.cli", "call", "--agent", str(agent), "-c", str(config), "--input", str(tmp_path / "in.wav"),
            "--output", str(tmp_path / "out.wav"), "--json", cwd=ROOT, env=env,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 300)
        assert proc.returncode == 0, err.decode()[-2000:]
        rec = json.loads(out)
        assert [t["text"] for t in rec["turns"] if t["speaker"] == "caller"] == ["What's six times seven?"]
        bot = [t for t in rec["turns"] if t["speaker"] == "bot"]
        assert bot[0]["text"] == "Thanks for calling Acme Dental. How can I help you today?"
        assert bot[1]["text"] == "Six times seven is 42." and bot[1]["tool_calls"][0]["result"] == 42
        # the caller heard the greeting and the answer in the ElevenLabs voice, all of it
        assert el.texts == ["Thanks for calling Acme Dental.", "How can I help you today?", "Six times seven is 42."] or \
            el.texts == ["Thanks for calling Acme Dental. How can I help you today?", "Six times seven is 42."]
        heard = read_wav_as(tmp_path / "out.wav").astype(np.float64)
        frames = heard[: len(heard) // 320 * 320].reshape(-1, 320)
        loud_s = float((np.sqrt((frames**2).mean(axis=1)) > 100).sum() * 0.02)
        assert abs(loud_s - sum(len(x.spoken) for x in el.sessions) * MS_PER_CHAR / 1000) < 0.3
        assert dg.conns[0].messages.count("Finalize") >= 1 and dg.conns[0].messages[-1] == "CloseStream"
    finally:
        for f in (dg, oa, el):
            await f.stop()
