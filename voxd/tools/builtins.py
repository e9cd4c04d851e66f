"""Built-in functions every agent can enable by name in its YAML `tools:` list."""

from __future__ import annotations

from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from voxd.tools.calc import CalcError, evaluate
from voxd.tools.registry import Tool, ToolContext, ToolError, ToolRegistry


def spoken_time(dt: datetime) -> str:
    hour = dt.hour % 12 or 12
    suffix = "AM" if dt.hour < 12 else "PM"
    return f"{hour}:{dt.minute:02d} {suffix}"


async def get_current_time(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    zone = args.get("timezone") or ctx.timezone or "UTC"
    try:
        tz = ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ToolError(f"unknown time zone {zone!r}; use an IANA name like Europe/Paris") from None
    now = datetime.now(tz)
    return {
        "iso": now.isoformat(timespec="seconds"),
        "timezone": zone,
        "spoken": spoken_time(now),
        "weekday": now.strftime("%A"),
        "date": now.strftime("%B %d, %Y").replace(" 0", " "),
    }


async def calculate(args: dict[str, Any], ctx: ToolContext) -> float | int:
    try:
        return evaluate(str(args["expression"]))
    except CalcError as e:
        raise ToolError(str(e)) from None


async def end_call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    await ctx.end_call(str(args.get("reason") or "agent_hangup"))
    return {"ended": True}


async def transfer_call(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    target = str(args["target"])
    allowed = ctx.options_for("transfer_call").get("allowed", [])
    if allowed and target not in allowed:
        raise ToolError(f"transfer to {target!r} is not allowed for this agent")
    if args.get("mode") == "attended":
        carry = getattr(ctx, "attended_transfer", None)
        if carry is None:
            raise ToolError("attended transfer is not available on this call")
        outcome = await carry(target, str(args.get("summary") or ""))
        if outcome.ok:
            return {"transferred": True, "mode": "attended"}
        return {"transferred": False, "mode": "attended", "reason": outcome.reason,
                "note": "the caller is back with you; tell them the transfer did not go through"}
    ok = await ctx.transfer_call(target)
    return {"transferred": ok}


BOOKING_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday", "tomorrow"]
# what callers say for a time: 15:00, 3 pm, 3pm, 10:30 am (words are written as digits by the model)
BOOKING_TIME = r"^([01]?[0-9]|2[0-3])(:[0-5][0-9])? ?([aApP][.]?[mM][.]?)?$"


def booking_time(said: str) -> str | None:
    """'15:00', '3 pm', 'three', 'half past two' -> 24-hour HH:MM (an hour alone, 1-7, is
    the afternoon, as for an appointment)."""
    from voxd.providers.llm.extract import extract_time

    text = str(said).strip().lower()
    return extract_time(text) or extract_time(f"at {text}")


async def book_appointment(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    """A demo booking: confirms the slot (a deployment replaces it with an HTTP function)."""
    when = booking_time(str(args["time"]))
    if when is None:
        raise ToolError(f"time {args['time']!r} is not a time of day like 15:00 or 3 pm")
    hour, minute = (int(x) for x in when.split(":"))
    spoken = f"{hour % 12 or 12}{f':{minute:02d}' if minute else ''} {'AM' if hour < 12 else 'PM'}"
    return {"day": args["day"], "time": when, "spoken": f"{args['day']} at {spoken}", "booked": True}


async def send_dtmf(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
    digits = str(args["digits"])
    await ctx.send_dtmf(digits)
    return {"sent": digits}


def builtin_tools() -> list[Tool]:
    return [
        Tool(
            "get_current_time",
            "Get the current local time and date. Use when the caller asks the time or date.",
            {
                "type": "object",
                "properties": {"timezone": {"type": "string", "description": "IANA zone, e.g. Europe/Paris"}},
                "additionalProperties": False,
            },
            get_current_time,
            timeout_s=2,
        ),
        Tool(
            "calculate",
            "Evaluate an arithmetic expression such as '12 * 7' or 'sqrt(2) + 3'.",
            {
                "type": "object",
                "properties": {"expression": {"type": "string", "minLength": 1, "maxLength": 200}},
                "required": ["expression"],
                "additionalProperties": False,
            },
            calculate,
            timeout_s=2,
        ),
        Tool(
            "end_call",
            "Hang up the call after saying goodbye. Use when the caller is done.",
            {
                "type": "object",
                "properties": {"reason": {"type": "string"}},
                "additionalProperties": False,
            },
            end_call,
            timeout_s=5,
            interruptible=False,
        ),
        Tool(
            "transfer_call",
            "Transfer the caller to a number or SIP URI. mode attended: the caller waits on hold while "
            "the target is called and hears the summary first; blind (default): hand the call over at once.",
            {
                "type": "object",
                "properties": {
                    "target": {"type": "string", "minLength": 1},
                    "mode": {"type": "string", "enum": ["blind", "attended"]},
                    "summary": {"type": "string", "maxLength": 1000,
                                "description": "attended: what to tell the target about the caller first"},
                },
                "required": ["target"],
                "additionalProperties": False,
            },
            transfer_call,
            timeout_s=120,
            interruptible=False,
        ),
        Tool(
            "book_appointment",
            "Book an appointment for the caller on a day at a time.",
            {
                "type": "object",
                "properties": {
                    "day": {"type": "string", "enum": BOOKING_DAYS},
                    "time": {"type": "string", "pattern": BOOKING_TIME, "maxLength": 12,
                             "description": "the time the caller said, e.g. 15:00 or 3 pm"},
                },
                "required": ["day", "time"],
                "additionalProperties": False,
            },
            book_appointment,
            timeout_s=5,
        ),
        Tool(
            "send_dtmf",
            "Press keypad digits towards the other party (0-9, *, #, A-D).",
            {
                "type": "object",
                "properties": {"digits": {"type": "string", "pattern": "^[0-9*#A-D]{1,32}$"}},
                "required": ["digits"],
                "additionalProperties": False,
            },
            send_dtmf,
            timeout_s=10,
        ),
    ]


def default_registry() -> ToolRegistry:
    reg = ToolRegistry()
    for t in builtin_tools():
        reg.register(t)
    return reg
