"""``/api/v1/calendar.ics``: the bookings agents made in voxd's own calendar (no CalDAV
server configured), as one iCalendar document a calendar app can subscribe to."""

from __future__ import annotations

from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.tools.calendar_events import calendar_ics

routes = RouteTable()


@routes.route("GET", "/api/v1/calendar.ics", scope="calls:read", summary="Bookings as iCalendar",
              tag="calendar", media_types=("text/calendar",),
              description="Every event `create_calendar_event` stored in voxd's own calendar (when "
              "`tools.calendar.url` names no CalDAV server), as `text/calendar`.")
async def calendar_export(ctx: Ctx) -> Reply:
    text = await calendar_ics(ctx.services.db)
    return Reply(raw=text.encode(), content_type="text/calendar",
                 headers={"Content-Disposition": 'inline; filename="voxd.ics"'})
