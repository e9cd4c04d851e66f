"""``/api/v1/conversations``: text conversations with an agent, through the same engine,
tools and function log as its calls (``voxd.call.conversation``), stored beside calls.

``POST .../messages`` answers with the agent's reply and its tool calls; with
``Accept: text/event-stream`` the reply streams as server-sent events: ``text`` (a clause
as soon as it is written), ``tool_call`` (a function as it returns), then ``reply`` (the
same body as the JSON answer) or ``error`` (a problem document).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from typing import Any

from aiohttp import web

from voxd.api.conversation_models import (
    CONVERSATION_ID_RE,
    ConversationDetail,
    ConversationPage,
    ConversationsQuery,
    ConversationStart,
    MessageReply,
    MessageSend,
)
from voxd.api.deps import ApiDeps, ConversationSource
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.call.conversation import ConversationEnded
from voxd.core.calllog import Turn
from voxd.core.errors import NotFound, NotSupported
from voxd.store.repos import InvalidCursor

routes = RouteTable(params={"conversation_id": CONVERSATION_ID_RE})
TAG = "conversations"
BASE = "/api/v1/conversations"
SSE = "text/event-stream"


def _source(ctx: Ctx) -> ConversationSource:
    source = ctx.services.deps.conversations
    if source is None:
        raise NotSupported("text conversations are not available in this process")
    return source


def _turn(t: Turn) -> dict[str, Any]:
    return {"index": t.index, "speaker": t.speaker, "text": t.text, "source": t.source,
            "started_at": t.started_at, "ended_at": t.ended_at,
            "latency": None if t.latency is None else {k: v for k, v in asdict(t.latency).items() if v is not None},
            "tool_calls": [asdict(tc) for tc in t.tool_calls]}


def _reply(conversation_id: str, turn: Turn, ended: bool) -> MessageReply:
    body = _turn(turn)
    return MessageReply.model_validate({"conversation_id": conversation_id, "reply": turn.text, "turn": body,
                                        "tool_calls": body["tool_calls"], "ended": ended})


async def _detail(ctx: Ctx, conversation_id: str) -> dict[str, Any]:
    conv = await ctx.services.conversations.get(conversation_id)
    if conv is None:
        raise NotFound(f"no conversation {conversation_id!r}")
    return conv


@routes.route("POST", BASE, scope="conversations:write", summary="Start a text conversation with an agent",
              tag=TAG, limit_class="write", body=ConversationStart, response=ConversationDetail, status=201,
              problems=("not-found", "not-implemented"),
              description="The agent's YAML, language model, functions and function log, without audio. "
              "The greeting, if the agent has one, is the first turn.")
async def start_conversation(ctx: Ctx) -> Reply:
    body: ConversationStart = ctx.body
    try:
        record = await _source(ctx).start(body.agent, dict(body.metadata), dict(body.variables))
    except NotFound as e:
        raise validation_problem([{"field": "agent", "message": str(e)}], "body") from e
    detail = await _detail(ctx, record.id)
    return Reply(ConversationDetail.model_validate(detail), status=201,
                 headers={"Location": f"{BASE}/{record.id}"})


@routes.route("GET", BASE, scope="conversations:read", summary="List text conversations, newest first",
              tag=TAG, query=ConversationsQuery, response=ConversationPage,
              description="Filter by agent and status; page with `cursor`.")
async def list_conversations(ctx: Ctx) -> Reply:
    q: ConversationsQuery = ctx.query
    try:
        page, cursor = await ctx.services.conversations.list(agent=q.agent, status=q.status, limit=q.limit,
                                                             cursor=q.cursor)
    except InvalidCursor as e:
        raise validation_problem([{"field": "cursor", "message": str(e)}], "query") from e
    return Reply(ConversationPage.model_validate({"conversations": page, "next_cursor": cursor}))


@routes.route("GET", BASE + "/{conversation_id}", scope="conversations:read",
              summary="A text conversation with its turns", tag=TAG, response=ConversationDetail,
              problems=("not-found",))
async def get_conversation(ctx: Ctx) -> Reply:
    return Reply(ConversationDetail.model_validate(await _detail(ctx, ctx.path["conversation_id"])))


@routes.route("POST", BASE + "/{conversation_id}/messages", scope="conversations:write",
              summary="Send the user's message; get the agent's reply", tag=TAG, limit_class="execute",
              body=MessageSend, response=MessageReply, problems=("not-found", "conflict", "not-implemented"),
              media_types=(SSE,),
              description="Runs one turn: the language model, with the functions it calls. With "
              "`Accept: text/event-stream` the reply streams as server-sent events: `text` (each clause as "
              "it is written), `tool_call` (each function as it returns), then `reply` (this operation's "
              "JSON body) or `error` (a problem). 409 when the conversation has ended.")
async def send_message(ctx: Ctx) -> Reply:
    cid = ctx.path["conversation_id"]
    body: MessageSend = ctx.body
    source = _source(ctx)
    conv = await _detail(ctx, cid)
    if conv["status"] == "ended":
        raise ApiProblem("conflict", f"conversation {cid} has ended")
    if SSE in ctx.request.headers.get("Accept", ""):
        return Reply(stream=lambda resp: _stream(ctx, source, cid, body.text, resp), content_type=SSE,
                     headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
    try:
        turn = await source.send(cid, body.text)
    except ConversationEnded as e:
        raise ApiProblem("conflict", f"conversation {cid} has ended") from e
    ended = (await _detail(ctx, cid))["status"] == "ended"
    return Reply(_reply(cid, turn, ended))


def _event(name: str, data: Any) -> bytes:
    return f"event: {name}\ndata: {json.dumps(data, default=str, separators=(',', ':'))}\n\n".encode()


async def _stream(ctx: Ctx, source: ConversationSource, cid: str, text: str, resp: web.StreamResponse) -> None:
    queue: asyncio.Queue[bytes | None] = asyncio.Queue()
    task = asyncio.ensure_future(source.send(cid, text, lambda name, data: queue.put_nowait(_event(name, data))))
    task.add_done_callback(lambda _: queue.put_nowait(None))
    try:
        while (chunk := await queue.get()) is not None:
            await resp.write(chunk)
        try:
            turn = task.result()
        except ConversationEnded:
            problem = ApiProblem("conflict", f"conversation {cid} has ended")
            await resp.write(_event("error", problem.body(f"{BASE}/{cid}/messages")))
            return
        except Exception:
            problem = ApiProblem("internal-error", "internal error; see the daemon log")
            await resp.write(_event("error", problem.body(f"{BASE}/{cid}/messages")))
            raise
        reply = _reply(cid, turn, (await _detail(ctx, cid))["status"] == "ended")
        await resp.write(_event("reply", reply.model_dump(mode="json")))
    finally:
        if not task.done():  # the client went away: the turn still completes and is recorded
            await asyncio.shield(task)


@routes.route("DELETE", BASE + "/{conversation_id}", scope="conversations:write",
              summary="End a text conversation", tag=TAG, limit_class="write", response=ConversationDetail,
              problems=("not-found",), description="Ends it (a `conversation.ended` webhook follows); "
              "answers with the final record. Ending one that has ended changes nothing.")
async def end_conversation(ctx: Ctx) -> Reply:
    cid = ctx.path["conversation_id"]
    await _detail(ctx, cid)
    await _source(ctx).end(cid)
    return Reply(ConversationDetail.model_validate(await _detail(ctx, cid)))


def standalone_source(deps: ApiDeps) -> ConversationSource:
    """Conversations for an API mounted without a daemon (tests, tools): agents from
    ``deps.agents``, the built-in functions, strict egress, stored in ``deps.db``."""
    from voxd.agents.loader import AgentLoadError, LoadedAgent, parse_agent
    from voxd.call.conversations import ConversationManager
    from voxd.tools.builtins import default_registry

    async def agent(name: str) -> LoadedAgent | None:
        try:
            _, text, _ = await deps.agents.get(name)
            return parse_agent(text, name, default_name=name)
        except (NotFound, AgentLoadError):
            return None

    registry = default_registry()
    return ConversationManager(agent, lambda _: registry, repo=deps.db.conversations())
