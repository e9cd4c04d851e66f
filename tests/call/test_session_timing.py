"""Turn-taking, barge-in and keypad timing on the virtual media clock (no sleeps)."""

from __future__ import annotations

from tests.call.helpers import make_session
from tests.synth import silence, voiced
from voxd.call.driver import drive, frames_of
from voxd.providers.base import ToolCall

F = 0.02


def first_true(xs: list[bool], start: int = 0) -> int:
    return next(i for i in range(start, len(xs)) if xs[i])


def first_false(xs: list[bool], start: int = 0) -> int:
    return next(i for i in range(start, len(xs)) if not xs[i])


async def test_greeting_plays_on_answer() -> None:
    s, _, _, tts, _ = make_session()
    res = await drive(s, frames_of(silence(0.2)), tail_s=0.5)
    assert tts.texts == ["Hello there."]
    # greeting audio starts on the first frame after answer
    assert res.bot_active[0]
    assert s.record.turns[0].speaker == "bot" and s.record.turns[0].source == "greeting"
    assert s.messages[-1].content == "Hello there."


async def test_turn_ends_after_silence_and_tool_runs_inside_turn() -> None:
    steps = [[ToolCall("c1", "calculate", {"expression": "12*7"})], "That's 84."]
    s, _, _, _tts, llm = make_session(
        {"greeting": None, "turn": {"detector": "silence", "min_silence_ms": 200, "max_silence_ms": 600}},
        transcripts=["what is twelve times seven"],
        steps=steps,
    )
    caller = silence(0.5) + voiced(1.0) + silence(2.0)
    res = await drive(s, frames_of(caller))
    caller_turns = [t for t in s.record.turns if t.speaker == "caller"]
    bot_turns = [t for t in s.record.turns if t.speaker == "bot"]
    assert [t.text for t in caller_turns] == ["what is twelve times seven"]
    assert bot_turns[0].text == "That's 84."
    tc = bot_turns[0].tool_calls[0]
    assert (tc.name, tc.arguments, tc.result, tc.error) == ("calculate", {"expression": "12*7"}, 84, None)
    # the LLM saw the tool result in the same turn
    assert any(m.role == "tool" and '"result": 84' in m.content for m in llm.calls[1])
    # speech ends at 1.5 s; the turn ends at max_silence (600 ms) later; bot audio on the next frame
    start = first_true(res.bot_active)
    assert abs(start * F - (1.5 + 0.6)) <= 2 * F
    assert bot_turns[0].latency is not None and bot_turns[0].latency.endpoint_ms == 600.0


async def test_smart_turn_ends_turn_early_when_confident() -> None:
    s, _, _, _, _ = make_session(
        {"greeting": None, "turn": {"min_silence_ms": 200, "max_silence_ms": 1500}},
        steps=["Hi."], turn_prob=0.9,
    )
    res = await drive(s, frames_of(voiced(0.8) + silence(2.5)))
    start = first_true(res.bot_active)
    assert abs(start * F - (0.8 + 0.2)) <= 2 * F


async def test_smart_turn_waits_when_turn_incomplete() -> None:
    s, _, _, _, _ = make_session(
        {"greeting": None, "turn": {"min_silence_ms": 200, "max_silence_ms": 1500}},
        steps=["Hi."], turn_prob=0.1,
    )
    res = await drive(s, frames_of(voiced(0.8) + silence(2.5)))
    start = first_true(res.bot_active)
    assert abs(start * F - (0.8 + 1.5)) <= 2 * F


async def test_barge_in_stops_bot_audio_on_next_frame_and_cancels_reply() -> None:
    long_reply = "This is a very long answer that keeps going. " * 4
    s, control, _, _, _ = make_session(
        {"greeting": long_reply, "interruption": {"min_speech_ms": 200}},
        transcripts=["stop please"], steps=["Okay."],
    )
    onset = 1.0
    res = await drive(s, frames_of(silence(onset) + voiced(0.8) + silence(3.0)))
    assert res.bot_active[int(onset / F) - 1]  # bot was talking
    stopped = first_false(res.bot_active, int(onset / F))
    # three voiced frames to an onset candidate, Silero answers within the frame
    assert (stopped - int(onset / F)) * F <= 0.08
    greeting = s.record.turns[0]
    assert greeting.interrupted and greeting.barge_in_ms is not None and greeting.barge_in_ms <= 60
    assert greeting.heard_text and len(greeting.heard_text) < len(greeting.text)
    # the context holds only what the caller heard
    assert s.messages[1].content == greeting.heard_text
    assert control.clears == 1
    assert s.record.interruptions == 1
    assert [t.text for t in s.record.turns if t.speaker == "caller"] == ["stop please"]


async def test_backchannel_pauses_then_resumes_without_interrupting() -> None:
    reply = "Here is everything you need to know about our opening hours and prices."
    s, control, _, tts, _ = make_session(
        {"greeting": reply, "interruption": {"min_speech_ms": 400}},
    )
    res = await drive(s, frames_of(silence(1.0) + voiced(0.2) + silence(6.0)))
    greeting = s.record.turns[0]
    assert not greeting.interrupted and s.record.interruptions == 0
    assert s.backchannels == 1
    assert control.clears == 0
    # all of the greeting's audio was played despite the pause
    expected_frames = -(-int(len(reply) * 60 / 100) * 1600 // 320)
    assert sum(res.bot_active) == expected_frames
    assert tts.texts == [reply]
    assert not [t for t in s.record.turns if t.speaker == "caller"]


async def test_noise_rejected_by_confirmation_does_not_interrupt() -> None:
    greeting = "A long greeting for everyone on the line today, with all the details you could want."
    s, control, _, _, _ = make_session({"greeting": greeting}, confirm=False)
    res = await drive(s, frames_of(silence(0.5) + voiced(3.0) + silence(3.0)))
    assert s.record.interruptions == 0 and control.clears == 0
    assert not s.record.turns[0].interrupted
    # webrtcvad-only "speech" holds the bot once, briefly (until Silero has said no for 0.5 s)
    expected = -(-int(len(greeting) * 60 / 100) * 1600 // 320)
    assert sum(res.bot_active) == expected
    gaps = [i for i in range(1, len(res.bot_active) - 1) if res.bot_active[i - 1] and not res.bot_active[i]]
    assert len(gaps) <= 2


async def test_dtmf_menu_paths_and_digit_interrupts() -> None:
    agent = {
        "greeting": "Welcome to the long and winding greeting of our company.",
        "dtmf": {
            "main_menu": "main",
            "menus": {
                "main": {
                    "prompt": "Press 1 for hours, 2 for billing, 9 to hang up.",
                    "options": {
                        "1": {"say": "We are open nine to five.", "then": "llm"},
                        "2": {"then": "goto", "target": "billing"},
                        "9": {"say": "Bye.", "then": "hangup"},
                    },
                },
                "billing": {"prompt": "Billing. Press 1 to pay.", "options": {"1": {"say": "Paying.", "then": "llm"}}},
            },
        },
    }
    s, control, _, tts, _ = make_session(agent)
    await drive(s, frames_of(silence(12.0)), dtmf=[(0.5, "2"), (4.0, "1"), (7.0, "9")])
    assert tts.texts[0].startswith("Welcome")
    # digit 2 at 0.5 s cut the greeting: the caller heard about half a second of it
    greeting = s.record.turns[0]
    assert greeting.interrupted and greeting.heard_text is not None
    assert len(greeting.heard_text.split()) < len(greeting.text.split()) / 2
    assert tts.texts[1] == "Billing. Press 1 to pay."
    said = [t.text for t in s.record.turns if t.speaker == "bot"][1:]
    assert said == ["Billing. Press 1 to pay.", "Paying.", "Bye."]
    assert control.hung_up and s.closed and s.record.end_reason == "menu_hangup"
    assert [d.digit for d in s.record.dtmf] == ["2", "1", "9"]


async def test_digit_collection_goes_to_llm() -> None:
    agent = {
        "greeting": None,
        "dtmf": {
            "collect": {"account": {"prompt": "Enter your account number then hash.", "max_digits": 6}},
            "menus": {"m": {"prompt": "Press 1 to enter your account.", "options": {"1": {"then": "collect", "target": "account"}}}},
            "main_menu": "m",
        },
    }
    s, _, _, _, llm = make_session(agent, steps=["Thanks, found it."])
    await drive(s, frames_of(silence(6.0)), dtmf=[(0.2, "1"), (1.0, "4"), (1.1, "2"), (1.2, "#")])
    user_msgs = [m.content for m in llm.calls[0] if m.role == "user"]
    assert user_msgs == ["(The caller entered account: 42)"]
    assert s.record.turns[-1].text == "Thanks, found it."


async def test_free_digits_reach_llm_after_timeout() -> None:
    s, _, _, _, llm = make_session({"greeting": None}, steps=["Got it."])
    await drive(s, frames_of(silence(4.0)), dtmf=[(0.2, "7"), (0.4, "3")])
    assert [m.content for m in llm.calls[0] if m.role == "user"] == ["(The caller pressed the keys 73 on the keypad.)"]


async def test_end_call_tool_says_goodbye_then_hangs_up() -> None:
    s, control, _, tts, _ = make_session(
        {"greeting": None, "turn": {"detector": "silence", "max_silence_ms": 400}},
        transcripts=["bye"], steps=[[ToolCall("e", "end_call", {})], "Goodbye!"],
    )
    await drive(s, frames_of(voiced(0.6) + silence(5.0)))
    assert tts.texts[-1] == "Goodbye!"
    assert control.hung_up and s.record.end_reason == "agent_hangup" and s.record.ended_by == "agent"


async def test_bad_tool_arguments_go_back_to_llm() -> None:
    s, _, _, _, llm = make_session(
        {"greeting": None, "turn": {"detector": "silence", "max_silence_ms": 400}},
        steps=[[ToolCall("c", "calculate", {"expr": "1+1"})], "Sorry."],
    )
    await drive(s, frames_of(voiced(0.6) + silence(3.0)))
    tool_msg = next(m for m in llm.calls[1] if m.role == "tool")
    assert "invalid arguments for calculate" in tool_msg.content
    assert s.record.turns[-1].text == "Sorry." and not s.closed


async def test_min_words_backchannel_is_decided_on_the_transcript() -> None:
    reply = "Here is a long answer about our opening hours and all of our prices for you."
    s, control, _, tts, _ = make_session(
        {"greeting": reply, "interruption": {"min_speech_ms": 200, "min_words": 2},
         "turn": {"detector": "silence", "max_silence_ms": 300}},
        transcripts=["yeah"],
    )
    res = await drive(s, frames_of(silence(1.0) + voiced(0.5) + silence(6.0)))
    # the bot paused at once, then resumed: one word is a backchannel
    assert not res.bot_active[int(1.1 / F)]
    assert s.record.interruptions == 0 and s.backchannels == 1 and control.clears == 0
    assert not s.record.turns[0].interrupted and tts.texts == [reply]
    assert not [t for t in s.record.turns if t.speaker == "caller"]


async def test_min_words_enough_words_interrupt() -> None:
    s, control, _, _, _ = make_session(
        {"greeting": "Here is a long answer about our opening hours and all of our prices.",
         "interruption": {"min_speech_ms": 200, "min_words": 2}, "turn": {"detector": "silence", "max_silence_ms": 300}},
        transcripts=["wait a second"], steps=["Sure."],
    )
    await drive(s, frames_of(silence(1.0) + voiced(0.5) + silence(3.0)))
    assert s.record.interruptions == 1 and s.record.turns[0].interrupted and control.clears == 1
    assert [t.text for t in s.record.turns[1:]] == ["wait a second", "Sure."]
