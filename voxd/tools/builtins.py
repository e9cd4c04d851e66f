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
    ok = await ctx.transfer_call(target)
    return {"transferred": ok}


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
            "Transfer the caller to a number or SIP URI.",
            {
                "type": "object",
                "properties": {"target": {"type": "string", "minLength": 1}},
                "required": ["target"],
                "additionalProperties": False,
            },
            transfer_call,
            timeout_s=30,
            interruptible=False,
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
