from __future__ import annotations

import json
from pathlib import Path

from voxd.agents.loader import load_agent_file
from voxd.providers.base import Message, TextDelta, ToolCallsRequested, ToolSpec
from voxd.providers.llm.dialog import DialogEngine
from voxd.providers.llm.extract import extract_expression, extract_time, extract_weekday, words_to_numbers

AGENT = load_agent_file(Path(__file__).parents[2] / "agents" / "receptionist.yaml").config
TOOLS = [ToolSpec(n, "", {}) for n in [*AGENT.tool_names, "open_keypad_menu"]]


async def step(engine: DialogEngine, messages: list[Message]) -> tuple[str, list]:
    text, calls = "", []
    async for ev in engine.stream(messages, TOOLS):
        if isinstance(ev, TextDelta):
            text += ev.text
        elif isinstance(ev, ToolCallsRequested):
            calls += list(ev.calls)
    return text, calls


def test_extractors() -> None:
    assert extract_expression("What is twelve times seven?") == "12 * 7"
    assert extract_expression("what's 2,500 divided by 5") == "2500 / 5"
    assert extract_expression("hello there") is None
    assert extract_time("on Tuesday at three pm") == "15:00"
    assert extract_time("at 10:30 am") == "10:30"
    assert extract_weekday("next Thursday please") == "Thursday"
    assert words_to_numbers("twenty one thousand three hundred and twelve") == "21312"


async def test_time_question_calls_tool_then_answers_from_result() -> None:
    eng = DialogEngine(AGENT.dialog)
    msgs = [Message("user", "What time is it?")]
    text, calls = await step(eng, msgs)
    assert text == "" and [c.name for c in calls] == ["get_current_time"]
    msgs += [Message("assistant", "", tool_calls=calls),
             Message("tool", json.dumps({"result": {"spoken": "4:15 PM"}}), tool_call_id=calls[0].id)]
    text, calls = await step(eng, msgs)
    assert text == "It's 4:15 PM here in London." and calls == []


async def test_math_extracts_expression_and_tool_error_is_spoken() -> None:
    eng = DialogEngine(AGENT.dialog)
    _, calls = await step(eng, [Message("user", "what is twelve times seven")])
    assert calls[0].name == "calculate" and calls[0].arguments == {"expression": "12 * 7"}
    text, _ = await step(eng, [Message("tool", json.dumps({"error": "division by zero"}))])
    assert text == "Sorry, I couldn't do that: division by zero."


async def test_slots_are_asked_for_then_filled() -> None:
    eng = DialogEngine(AGENT.dialog)
    text, _ = await step(eng, [Message("user", "I'd like to book an appointment")])
    assert text == "Sure. Which day would suit you?"
    text, _ = await step(eng, [Message("user", "Tuesday")])
    assert text == "And what time on Tuesday?"
    _, calls = await step(eng, [Message("user", "three pm")])
    assert calls[0].name == "book_appointment" and calls[0].arguments == {"day": "Tuesday", "time": "15:00"}
    text, _ = await step(eng, [Message("tool", json.dumps({"result": {"booked": True}}), tool_call_id=calls[0].id)])
    assert text == "Great, you're booked for Tuesday at 15:00. See you then!"
    # all slots in one utterance
    _, calls = await step(eng, [Message("user", "book an appointment on friday at 10 am")])
    assert calls[0].arguments == {"day": "Friday", "time": "10:00"}
    text, _ = await step(eng, [Message("tool", json.dumps({"result": {"booked": True}}), tool_call_id=calls[0].id)])
    assert text == "Great, you're booked for Friday at 10:00. See you then!"


async def test_menu_intent_and_fallback() -> None:
    eng = DialogEngine(AGENT.dialog)
    text, calls = await step(eng, [Message("user", "can I speak to someone in sales please")])
    assert text == "Let me give you some options." and calls[0].name == "open_keypad_menu"
    text, calls = await step(eng, [Message("user", "purple elephants dance")])
    assert text.startswith("Sorry, I didn't catch that") and not calls
