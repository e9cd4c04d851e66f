"""create_calendar_event: on a CalDAV server (the blocking ``caldav`` client, run in a
worker thread), or in voxd's own store, served as iCalendar by ``calendar_ics``."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import icalendar

from voxd.config.tools import CalendarConfig, merged
from voxd.store.repos import Store
from voxd.tools.registry import Tool, ToolContext, ToolError

AGENT_FIELDS = ("default_duration_min",)
PRODID = "-//voxd//voice agent//EN"

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {
        "title": {"type": "string", "minLength": 1, "maxLength": 200},
        "start": {"type": "string", "minLength": 10, "maxLength": 40,
                  "description": "ISO 8601 local date and time, e.g. 2026-03-14T15:00"},
        "duration_minutes": {"type": "integer", "minimum": 5, "maximum": 1440},
        "description": {"type": "string", "maxLength": 2000},
        "location": {"type": "string", "maxLength": 200},
        "attendee_email": {"type": "string", "pattern": r"^[^@\s]+@[^@\s]+\.[^@\s]+$"},
    },
    "required": ["title", "start"],
    "additionalProperties": False,
}


def _when(args: dict[str, Any], zone: str, default_min: int) -> tuple[datetime, datetime]:
    try:
        tz = ZoneInfo(zone or "UTC")
    except (ZoneInfoNotFoundError, ValueError):
        tz = ZoneInfo("UTC")
    try:
        start = datetime.fromisoformat(str(args["start"]))
    except ValueError:
        raise ToolError(f"start {args['start']!r} is not an ISO 8601 date and time like 2026-03-14T15:00") from None
    if start.tzinfo is None:
        start = start.replace(tzinfo=tz)
    return start, start + timedelta(minutes=int(args.get("duration_minutes") or default_min))


def _utc(iso: str) -> datetime:
    """Times go out in UTC: icalendar writes a fixed-offset time as floating (no zone)."""
    return datetime.fromisoformat(iso).astimezone(UTC)


def vevent(ev: dict[str, Any]) -> icalendar.Event:
    e = icalendar.Event()
    e.add("uid", ev["uid"])
    e.add("dtstamp", datetime.now(UTC).replace(microsecond=0))
    e.add("summary", ev["summary"])
    e.add("dtstart", _utc(ev["starts_at"]))
    e.add("dtend", _utc(ev["ends_at"]))
    if ev.get("description"):
        e.add("description", ev["description"])
    if ev.get("location"):
        e.add("location", ev["location"])
    if ev.get("attendee"):
        e.add("attendee", f"mailto:{ev['attendee']}")
    return e


def to_ics(events: list[dict[str, Any]]) -> str:
    cal = icalendar.Calendar()
    cal.add("prodid", PRODID)
    cal.add("version", "2.0")
    for ev in events:
        cal.add_component(vevent(ev))
    text: str = cal.to_ical().decode()
    return text


async def calendar_ics(db: Store) -> str:
    """Every event in voxd's own calendar as one iCalendar document (text/calendar)."""
    return to_ics(await db.calendar().list())


def _caldav_save(cfg: CalendarConfig, ics: str) -> None:
    import caldav

    client_cls: Any = caldav.DAVClient
    with client_cls(
        url=cfg.url, username=cfg.username, password=cfg.password() if cfg.username else None,
        timeout=int(cfg.timeout_s),
    ) as client:
        client.calendar(url=cfg.url).save_event(ics)


def calendar_tool(base: CalendarConfig, db: Store | None) -> Tool:
    async def create_calendar_event(args: dict[str, Any], ctx: ToolContext) -> dict[str, Any]:
        cfg: CalendarConfig = merged(base, ctx.options_for("create_calendar_event"), AGENT_FIELDS)
        start, end = _when(args, ctx.timezone, cfg.default_duration_min)
        ev = {
            "uid": f"{uuid.uuid4()}@voxd", "call_id": ctx.call_id or None, "agent": "",
            "summary": str(args["title"]), "description": str(args.get("description") or ""),
            "location": str(args.get("location") or ""), "attendee": args.get("attendee_email"),
            "starts_at": start.isoformat(), "ends_at": end.isoformat(),
        }
        if cfg.url:
            try:
                await asyncio.to_thread(_caldav_save, cfg, to_ics([ev]))
            except ToolError:
                raise
            except Exception as e:  # caldav raises its own errors, requests' and lxml's
                raise ToolError(f"the calendar server refused the event ({type(e).__name__})") from None
            where = "caldav"
        elif db is not None:
            await db.calendar().add(ev)
            where = "voxd"
        else:
            raise ToolError("no calendar is set up on this server (tools.calendar.url)")
        return {"event_id": ev["uid"], "calendar": where, "start": ev["starts_at"], "end": ev["ends_at"],
                "title": ev["summary"]}

    return Tool(
        "create_calendar_event",
        "Book an event or appointment in the calendar. Confirm the date, time and title with the caller first.",
        PARAMETERS, create_calendar_event, timeout_s=base.timeout_s + 5, interruptible=False,
    )
