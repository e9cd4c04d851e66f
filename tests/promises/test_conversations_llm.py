"""A text conversation through the OpenAI-compatible provider against a local server that
streams a tool call (tests/cloud/fake_openai.py), over JSON and server-sent events; and
`voxd chat` on the terminal through the same engine."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import aiohttp

from tests.cloud.fake_openai import FakeOpenAI
from tests.daemons import start_daemon
from tests.promises.test_conversations import sse
from voxd.api.keys_cli import create_key

ROOT = Path(__file__).parents[2]


def llm_agent(base_url: str) -> str:
    return f"""
greeting: Hello, I can do sums.
llm: {{engine: openai-compatible, base_url: "{base_url}", model: fake-model}}
tools: [calculate, transfer_call]
"""


async def test_openai_compatible_text_conversation_with_a_streamed_tool_call(tmp_path: Path) -> None:
    fake = await FakeOpenAI([
        [("calculate", {"expression": "6 * 7"})], "Six times seven is 42.",
        [("calculate", {"expression": "2 + 2"})], "Two plus two is 4.",
    ]).start()
    d = await start_daemon(tmp_path, {"sums": llm_agent(fake.url)},
                           egress={"allow": [{"networks": ["127.0.0.1/32"], "uses": ["providers"]}]})
    try:
        admin = {"Authorization": f"Bearer {await create_key(d.db, 'admin', ['admin'])}"}
        base = f"http://127.0.0.1:{d.http_port}/api/v1/conversations"
        async with aiohttp.ClientSession() as http:
            async with http.post(base, headers=admin, json={"agent": "sums"}) as r:
                cid = (await r.json())["id"]
            async with http.post(f"{base}/{cid}/messages", headers=admin, json={"text": "What is six times seven?"}) as r:
                assert r.status == 200, await r.text()
                reply = await r.json()
            assert reply["reply"] == "Six times seven is 42."
            (tool,) = reply["tool_calls"]
            assert tool["name"] == "calculate" and tool["arguments"] == {"expression": "6 * 7"} and tool["result"] == 42

            async with http.post(f"{base}/{cid}/messages", headers={**admin, "Accept": "text/event-stream"},
                                 json={"text": "And two plus two?"}) as r:
                events = await sse(r)
            assert events[0][0] == "tool_call" and events[-1][0] == "reply"
            assert events[-1][1]["reply"] == "Two plus two is 4."
            assert " ".join(x["text"] for n, x in events if n == "text") == "Two plus two is 4."

        # what the model was sent: the greeting, the user's words, the tool exchange, and only
        # the functions a text conversation can carry out
        first, second = fake.requests[0], fake.requests[1]
        assert [t["function"]["name"] for t in first["tools"]] == ["calculate"]
        assert [m["role"] for m in first["messages"]] == ["system", "assistant", "user"]
        tool_msg = second["messages"][-1]
        assert tool_msg["role"] == "tool" and json.loads(tool_msg["content"])["result"] == 42
        assert second["messages"][-2]["tool_calls"][0]["function"]["name"] == "calculate"
        assert [m["role"] for m in fake.requests[2]["messages"]][-3:] == ["tool", "assistant", "user"]
    finally:
        await d.stop()
        await fake.stop()


def test_voxd_chat_on_the_terminal() -> None:
    lines = "what time is it\nI'd like to book an appointment\nMonday\n3pm\n"
    r = subprocess.run([sys.executable, "-m", "voxd.cli", "chat", "--agent", "agents/receptionist.yaml"],
                       input=lines, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = r.stdout.splitlines()
    assert out[0] == "bot   : Thanks for calling Acme Dental. How can I help you today?"
    assert any(x.startswith("  tool get_current_time({}) -> ") for x in out)
    assert any(x.startswith("bot   : It's ") and x.endswith("here in London.") for x in out)
    assert "bot   : Great, you're booked for Monday at 15:00. See you then!" in out
    assert out[-1].endswith("ended: caller_hangup)")
