"""``/api/v1/calls``: history with transcripts from the store, live calls from the daemon."""

from __future__ import annotations

from typing import Any

from voxd.api.auth import client_ip
from voxd.api.models import (
    CALL_ID_RE,
    ActiveCalls,
    AnalysisQueued,
    CallDetail,
    CallPage,
    CallsQuery,
    DialRequest,
    DialResult,
    EndResult,
)
from voxd.api.org_limits import check_call_limits
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.recordings import recording_room
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound
from voxd.core.pii import KEEP
from voxd.store.repos import InvalidCursor

routes = RouteTable(params={"call_id": CALL_ID_RE})
TAG = "calls"
BASE = "/api/v1/calls"


@routes.route("GET", BASE, scope="calls:read", summary="List calls, newest first", tag=TAG,
              query=CallsQuery, response=CallPage,
              description="Filter by agent, status, start time and the post-call analysis (`outcome`, "
                          "`sentiment_lt`, `sentiment_gt`, `mos_lt`); page with `cursor`.")
async def list_calls(ctx: Ctx) -> Reply:
    q: CallsQuery = ctx.query
    try:
        calls, cursor = await ctx.services.calls.list(
            agent=q.agent, status=q.status, since=q.since, until=q.until, limit=q.limit,
            cursor=q.cursor, outcome=q.outcome, sentiment_lt=q.sentiment_lt, sentiment_gt=q.sentiment_gt,
            mos_lt=q.mos_lt)
    except InvalidCursor as e:
        raise validation_problem([{"field": "cursor", "message": str(e)}], "query") from e
    return Reply(CallPage.model_validate({"calls": calls, "next_cursor": cursor}))


@routes.route("GET", BASE + "/active", scope="calls:read", summary="Calls in progress",
              tag=TAG, response=ActiveCalls)
async def active_calls(ctx: Ctx) -> Reply:
    return Reply(ActiveCalls.model_validate({"calls": await _live(ctx)}))


async def _live(ctx: Ctx) -> list[dict[str, Any]]:
    """Calls in progress as the API shows them: redacted like the store's (the live call
    itself keeps the real words)."""
    red = ctx.services.db.pii()
    calls = await ctx.services.deps.calls.active()
    return calls if red is None else [red.value(c, KEEP) for c in calls]


@routes.route("GET", BASE + "/{call_id}", scope="calls:read",
              summary="A call with its transcript", tag=TAG, response=CallDetail,
              problems=("not-found",),
              description="Turns with timestamps, speaker, interrupted flag and what the caller "
              "heard, latencies, tool calls with arguments and results, and DTMF digits.")
async def get_call(ctx: Ctx) -> Reply:
    call_id = ctx.path["call_id"]
    call = await ctx.services.calls.get(call_id)
    if call is None:
        for active in await _live(ctx):
            if active.get("id") == call_id:
                call = active
                break
    if call is None:
        raise NotFound(f"no call {call_id!r}")
    return Reply(CallDetail.model_validate(call))


@routes.route("DELETE", BASE + "/{call_id}", scope="users:admin", summary="Erase a call (right to erasure)",
              tag=TAG, limit_class="write", status=204, problems=("not-found", "conflict"), self_audited=True,
              description="Deletes the call's transcript, tool calls, DTMF digits, recording files, post-call "
              "analysis, function log, caller and callee, metadata and variables, and empties its webhook "
              "messages. A tombstone stays (id, agent, direction, status, times, `erased_at`) so usage still adds "
              "up. 409 while the call is in progress. Audited as `erase_call` (without any of the erased content).")
async def erase_call(ctx: Ctx) -> Reply:
    call_id = ctx.path["call_id"]
    if any(a.get("id") == call_id for a in await ctx.services.deps.calls.active()):
        raise ApiProblem("conflict", f"call {call_id!r} is in progress: end it first")
    tomb = await ctx.services.calls.erase(call_id)  # this organisation's calls only
    if tomb is None:
        raise NotFound(f"no call {call_id!r}")
    files = recording_room(ctx).delete_files(call_id)
    await ctx.services.audit.append(actor=ctx.actor, ip=client_ip(ctx.request, ctx.services.settings.trust_forwarded_for),
                                    action="erase_call", target=call_id,
                                    after={**tomb, "recording_deleted": files})
    return Reply(status=204)


@routes.route("POST", BASE + "/{call_id}/end", scope="calls:write", summary="End an active call",
              tag=TAG, limit_class="write", response=EndResult, status=202,
              problems=("not-found",))
async def end_call(ctx: Ctx) -> Reply:
    call_id = ctx.path["call_id"]
    if not await ctx.services.deps.calls.end(call_id):
        raise NotFound(f"no active call {call_id!r}")
    return Reply(EndResult(id=call_id), status=202)


@routes.route("POST", BASE + "/{call_id}/analysis", scope="calls:write", summary="Analyse a call again",
              tag=TAG, limit_class="write", response=AnalysisQueued, status=202, problems=("not-found",),
              description="Queues the post-call analysis of an ended call again (after editing the agent's "
              "`analysis:` block, say); its result replaces `analysis` and sends another `call.analyzed`.")
async def reanalyse_call(ctx: Ctx) -> Reply:
    call_id = ctx.path["call_id"]
    if not await ctx.services.db.analysis().enqueue(call_id, again=True):
        raise NotFound(f"no call {call_id!r}")
    return Reply(AnalysisQueued(call_id=call_id, status="pending"), status=202)


@routes.route("POST", BASE, scope="calls:write", summary="Place an outbound call", tag=TAG,
              limit_class="execute", body=DialRequest, response=DialResult, status=202,
              problems=("not-found", "not-implemented", "at-capacity", "rate-limited"),
              description="`to` is a SIP URI, or a phone number dialled through `trunk`, one that lists the caller's "
              "organisation (`sip.trunks[].orgs`; any other is 404). Answers 429 over the "
              "organisation's calls at once or per day, 501 when "
              "no configured transport can dial out, 503 when the trunk's call caps are reached; a call the "
              "callee refuses ends with a reason naming the SIP status and the trunk.")
async def dial(ctx: Ctx) -> Reply:
    body: DialRequest = ctx.body
    limits = await ctx.services.org_limits.get(ctx.services.db.orgs(), ctx.org)
    await check_call_limits(limits, ctx.services.calls, await ctx.services.deps.calls.active())
    try:
        call_id = await ctx.services.deps.calls.dial(
            body.agent, body.to, body.from_, body.trunk, variables=body.variables,
            recording=body.recording.given() if body.recording is not None else None)
    except ValueError as e:
        raise validation_problem([{"field": "to", "message": str(e)}], "body") from e
    return Reply(DialResult(id=call_id), status=202, headers={"Location": f"{BASE}/{call_id}"})
