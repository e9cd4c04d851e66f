"""Run the default daemon and complete one call against it over the websocket.

Used by test_offline.py inside a network namespace that has only loopback:
`unshare -n sh -c 'ip link set lo up; python tests/e2e/offline_call.py PORT STATE_DIR'`.
Prints a JSON summary on stdout.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import numpy as np

ROOT = Path(__file__).parents[2]
sys.path.insert(0, str(ROOT))

from voxd.media.audio import read_wav_as  # noqa: E402


async def call(port: int, key: str) -> dict:
    url = f"http://127.0.0.1:{port}"
    speech = read_wav_as(ROOT / "tests/data/speech/flite-slt/what_time.8k.wav")
    caller = np.concatenate([speech, np.zeros(16000 * 4, np.int16)]).tobytes()
    out: dict = {"transcripts": [], "bot_audio_bytes": 0}
    async with aiohttp.ClientSession() as http:
        for _ in range(600):
            try:
                async with http.get(url + "/healthz") as r:
                    if r.status == 200:
                        break
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
        async with http.ws_connect(url + "/media/voxd?sample_rate=16000",
                                   headers={"Authorization": f"Bearer {key}"}) as ws:
            sent = False
            async with asyncio.timeout(120):
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.BINARY:
                        out["bot_audio_bytes"] += len(msg.data)
                        continue
                    ev = json.loads(msg.data)
                    if ev["type"] == "transcript":
                        out["transcripts"].append([ev["speaker"], ev["text"]])
                        if not sent and ev["speaker"] == "bot":  # greeting heard: ask
                            for i in range(0, len(caller), 3200):
                                await ws.send_bytes(caller[i : i + 3200])
                            sent = True
                        elif ev["speaker"] == "bot" and sent:
                            await ws.send_str(json.dumps({"type": "stop"}))
                    elif ev["type"] == "end":
                        out["end"] = ev["reason"]
                        break
    return out


def main() -> int:
    port, state = int(sys.argv[1]), sys.argv[2]
    env = dict(os.environ, VOXD_STATE_DIR=state)
    # what the README tells an integrator: a key with calls:write for the media websocket
    key = subprocess.run(
        [sys.executable, "-m", "voxd.cli", "keys", "-c", str(ROOT / "config/voxd.yaml"), "create", "--name", "e2e",
         "--scope", "calls:write"], cwd=ROOT, env=env, capture_output=True, text=True, check=True,
    ).stdout.strip()
    with open(Path(state) / "daemon.log", "w") as log:
        daemon = subprocess.Popen(
            [sys.executable, "-m", "voxd.cli", "run", "-c", str(ROOT / "config/voxd.yaml"), "--http-port", str(port),
             "--sip-port", str(port + 1)],
            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log,
        )
        t0 = time.time()
        try:
            result = asyncio.run(call(port, key))
            result["seconds"] = round(time.time() - t0, 1)
            print(json.dumps(result))
        finally:
            daemon.terminate()
            result_rc = daemon.wait(30)
    return 0 if result_rc == 0 else 3


if __name__ == "__main__":
    sys.exit(main())
