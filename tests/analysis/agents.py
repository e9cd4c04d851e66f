"""Agents and stored-call shapes shared by the analysis tests."""

from __future__ import annotations

from typing import Any

BOOKING_ANALYSIS = """
analysis:
  schema:
    type: object
    properties:
      day: {type: string, enum: [Monday, Tuesday, Wednesday, Thursday, Friday, Saturday, Sunday]}
      time: {type: string, pattern: "^[0-2][0-9]:[0-5][0-9]$"}
    required: [day, time]
    additionalProperties: false
  instructions: Take the day and the time of the appointment the caller booked.
  outcomes: {booked: book, informed: hours}
  default_outcome: no_booking
"""

DIALOG = """
tools: [book_appointment, get_current_time]
dialog:
  intents:
    - name: book
      examples: ["I'd like to book an appointment", "book me in", "can I make an appointment"]
      keywords: [book, appointment]
      slots:
        - {name: day, extract: weekday, prompt: Which day would suit you?}
        - {name: time, extract: time, prompt: "And what time on {day}?"}
      tool: book_appointment
      arguments: {day: $day, time: $time}
      reply: You're booked for {day} at {time}.
    - name: hours
      examples: ["when are you open", "what are your opening hours"]
      keywords: [hours, open]
      reply: We're open nine to six.
"""


def booking_agent(llm: str = "{engine: dialog}", extra: str = "") -> str:
    return f"""
name: front
greeting: Hello, Acme Dental.
stt: {{engine: fake}}
llm: {llm}
voice: {{engine: fake}}
{DIALOG}
{BOOKING_ANALYSIS}
{extra}
"""


def turn(index: int, speaker: str, text: str, start: float, end: float, **kw: Any) -> dict[str, Any]:
    return {"index": index, "speaker": speaker, "text": text, "started_at": start, "ended_at": end,
            "interrupted": kw.pop("interrupted", False), "heard_text": None, "source": kw.pop("source", "speech"),
            "latency": kw.pop("latency", None), "tool_calls": kw.pop("tool_calls", []), "barge_in_ms": None, **kw}


def booking_call(rtp: dict[str, Any] | None = None) -> dict[str, Any]:
    lat = {"endpoint_ms": 300.0, "transcript_ms": 40.0, "first_token_ms": 90.0, "first_audio_ms": 500.0}
    book = {"name": "book_appointment", "arguments": {"day": "Thursday", "time": "10:00"},
            "result": {"booked": True}, "error": None, "started_at": 1009.0, "duration_ms": 2.0}
    meta: dict[str, Any] = {"codec": "PCMU"}
    if rtp is not None:
        meta["rtp"] = rtp
    return {
        "id": "call_test0000000000000001", "agent": "front", "agent_version": "v1", "transport": "sip",
        "from_uri": "sip:a@127.0.0.1", "to_uri": "sip:b@127.0.0.1", "direction": "inbound", "status": "ended",
        "started_at": 999.0, "answered_at": 1000.0, "ended_at": 1020.0, "end_reason": "caller_hangup",
        "ended_by": "caller", "interruptions": 0, "metadata": meta, "dtmf": [],
        "turns": [
            turn(0, "bot", "Hello, Acme Dental.", 1000.0, 1001.5, source="greeting"),
            turn(1, "caller", "Hi, I'd like to book an appointment please, that would be great", 1002.0, 1004.0),
            turn(2, "bot", "Which day would suit you?", 1004.8, 1006.0, source="reply", latency=lat),
            turn(3, "caller", "Thursday", 1006.5, 1007.0),
            turn(4, "bot", "And what time on Thursday?", 1007.8, 1008.5, source="reply", latency=lat,
                 interrupted=True),
            turn(5, "caller", "at ten am", 1008.3, 1009.0, tool_calls=[book]),
            turn(6, "bot", "You're booked for Thursday at 10:00.", 1009.9, 1011.5, source="reply",
                 latency=lat | {"first_audio_ms": 900.0}),
        ],
    }
