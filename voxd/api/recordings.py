"""``/api/v1/calls/{call_id}/recording``: a call's audio, streamed with HTTP range requests.

The call must be one of the caller's organisation (the store answers only its own calls:
another organisation's call is 404 like an unknown one). The file is found from the call
id and the stored format, never from a path a client or the record could steer.
"""

from __future__ import annotations

import asyncio
import re
import time
from pathlib import Path
from typing import Any

from aiohttp import web
from pydantic import BaseModel

from voxd.api.models import CALL_ID_RE
from voxd.api.problems import ApiProblem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.call.recording import CONTENT_TYPES, Recordings
from voxd.core.errors import NotFound

routes = RouteTable(params={"call_id": CALL_ID_RE})
TAG = "calls"
PATH = "/api/v1/calls/{call_id}/recording"
CHUNK = 256 * 1024
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class Unsatisfiable(ValueError):
    pass


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte span a ``Range`` header asks of a ``size``-byte file; None to
    send it whole (no header, another unit, several ranges or bad syntax: RFC 9110 lets a
    server ignore those). Raises Unsatisfiable for a range past the end (416)."""
    if not header:
        return None
    m = _RANGE.match(header.strip())
    if m is None:
        return None
    first, last = m[1], m[2]
    if not first and not last:
        return None
    if not first:  # the last N bytes
        n = int(last)
        if n == 0 or size == 0:
            raise Unsatisfiable(header)
        return max(0, size - n), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if last and end < start:
        return None  # invalid: ignored
    if start >= size:
        raise Unsatisfiable(header)
    return start, min(end, size - 1)


class RecordingDeleted(BaseModel):
    id: str
    deleted: bool = True


def recording_room(ctx: Ctx) -> Recordings:
    directory = ctx.services.deps.recordings
    if directory is None:
        directory = Path(str(ctx.services.deps.db.path)).parent / "recordings"
    return Recordings(directory)


async def _recording(ctx: Ctx) -> tuple[str, dict[str, Any], Path]:
    call_id = ctx.path["call_id"]
    call = await ctx.services.calls.get(call_id)  # this organisation's calls only
    info = (call or {}).get("metadata", {}).get("recording")
    if not isinstance(info, dict) or info.get("format") not in CONTENT_TYPES or info.get("status") == "deleted":
        raise NotFound(f"no recording of call {call_id!r}")
    path = recording_room(ctx).path_for(call_id, info["format"])
    if not path.is_file():
        raise NotFound(f"no recording of call {call_id!r}")
    return call_id, info, path


@routes.route("GET", PATH, scope="recordings:read", summary="A call's recording", tag=TAG,
              problems=("not-found", "range-not-satisfiable"), media_types=("audio/wav", "audio/ogg"),
              description="The audio file (`audio/wav` or `audio/ogg` Opus): caller left, bot right for stereo. "
              "Supports a single `Range: bytes=` span (206 with `Content-Range`, 416 past the end).")
async def get_recording(ctx: Ctx) -> Reply:
    _, info, path = await _recording(ctx)
    size = path.stat().st_size
    try:
        span = parse_range(ctx.request.headers.get("Range"), size)
    except Unsatisfiable:
        raise ApiProblem("range-not-satisfiable", f"the recording has {size} bytes",
                         headers={"Content-Range": f"bytes */{size}"}) from None
    start, end = span if span is not None else (0, size - 1)
    headers = {"Accept-Ranges": "bytes", "Content-Length": str(end - start + 1),
               "Content-Disposition": f'attachment; filename="{path.name}"', "Cache-Control": "private, no-store"}
    if info.get("sha256"):
        headers["ETag"] = f'"{info["sha256"]}"'
    if span is not None:
        headers["Content-Range"] = f"bytes {start}-{end}/{size}"

    async def send(resp: web.StreamResponse) -> None:
        with open(path, "rb") as f:  # noqa: ASYNC230 (reads go to a thread below)
            f.seek(start)
            left = end - start + 1
            while left > 0:
                chunk = await asyncio.to_thread(f.read, min(CHUNK, left))
                if not chunk:
                    break
                left -= len(chunk)
                await resp.write(chunk)

    return Reply(status=206 if span is not None else 200, headers=headers, stream=send,
                 content_type=CONTENT_TYPES[info["format"]])


@routes.route("DELETE", PATH, scope="recordings:write", summary="Delete a call's recording", tag=TAG,
              limit_class="write", response=RecordingDeleted, problems=("not-found",),
              description="Removes the audio file; the call record keeps `metadata.recording` with "
              "`status: deleted`.")
async def delete_recording(ctx: Ctx) -> Reply:
    call_id, info, _ = await _recording(ctx)
    recording_room(ctx).delete_files(call_id)
    await ctx.services.calls.set_recording(call_id, {**info, "status": "deleted", "deleted_at": time.time(),
                                                     "deleted_by": ctx.actor})
    return Reply(RecordingDeleted(id=call_id))
