"""``/api/v1/agents``: the YAML files stay the source of truth; the daemon writes them."""

from __future__ import annotations

import asyncio
import re

from voxd.api.agent_yaml import agent_name
from voxd.api.deps import AgentInfo, InvalidAgent
from voxd.api.models import (
    NAME_PATTERN,
    NAME_RE,
    AgentDetail,
    AgentHistory,
    AgentList,
    AgentSummary,
    AgentValidation,
    AgentWrite,
)
from voxd.api.problems import ApiProblem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound

routes = RouteTable(params={"name": NAME_RE})
TAG = "agents"
BASE = "/api/v1/agents"


def _summary(info: AgentInfo) -> AgentSummary:
    return AgentSummary(name=info.name, version=info.version, description=info.description,
                        path=info.path, updated_at=info.updated_at)


def _name(ctx: Ctx) -> str:
    name = ctx.path["name"]
    if not re.fullmatch(NAME_PATTERN, name):
        raise NotFound(f"no agent named {name!r}")
    return name


async def _exists(ctx: Ctx, name: str) -> bool:
    try:
        await ctx.services.deps.agents.get(name)
    except NotFound:
        return False
    return True


async def _check(ctx: Ctx, yaml_text: str) -> None:
    errors = await ctx.services.deps.agents.validate(yaml_text)
    if errors:
        first = errors[0]
        raise ApiProblem("invalid-agent",
                         f"yaml field '{first.get('field')}' (line {first.get('line')}): "
                         f"{first.get('message')}", errors=errors)


async def _detail(ctx: Ctx, name: str) -> AgentDetail:
    info, text, config = await ctx.services.deps.agents.get(name)
    return AgentDetail(**_summary(info).model_dump(), yaml=text, config=config)


@routes.route("GET", BASE, scope="agents:read", summary="List agents", tag=TAG,
              response=AgentList)
async def list_agents(ctx: Ctx) -> Reply:
    infos = await ctx.services.deps.agents.list()
    return Reply(AgentList(agents=[_summary(i) for i in infos]))


@routes.route("GET", BASE + "/{name}", scope="agents:read", summary="Get an agent", tag=TAG,
              response=AgentDetail, problems=("not-found",))
async def get_agent(ctx: Ctx) -> Reply:
    return Reply(await _detail(ctx, _name(ctx)))


@routes.route("POST", BASE, scope="agents:write", summary="Create an agent", tag=TAG,
              limit_class="write", body=AgentWrite, response=AgentDetail, status=201,
              problems=("conflict", "invalid-agent"),
              description="The agent's name is the `name` field of the YAML. The file is "
              "written atomically and the daemon loads it without a restart.")
async def create_agent(ctx: Ctx) -> Reply:
    body: AgentWrite = ctx.body
    await _check(ctx, body.yaml)
    name = await asyncio.to_thread(agent_name, body.yaml)
    if name is None:  # validate() passed, so this only happens with a lax AgentSource
        raise ApiProblem("invalid-agent", "yaml field 'name': missing",
                         errors=[{"field": "name", "line": None, "message": "missing"}])
    if await _exists(ctx, name):
        raise ApiProblem("conflict", f"an agent named {name!r} already exists; use PUT")
    info = await _put(ctx, name, body.yaml)
    await ctx.services.agent_changes.record(name, info.version, "create", ctx.actor)
    return Reply(await _detail(ctx, name), status=201,
                 headers={"Location": f"{BASE}/{name}"})


async def _put(ctx: Ctx, name: str, text: str) -> AgentInfo:
    try:
        return await ctx.services.deps.agents.put(name, text, ctx.actor)
    except InvalidAgent as e:
        raise ApiProblem("invalid-agent", f"yaml: {e}", errors=e.errors) from e


@routes.route("PUT", BASE + "/{name}", scope="agents:write", summary="Replace an agent's YAML",
              tag=TAG, limit_class="write", body=AgentWrite, response=AgentDetail,
              problems=("not-found", "invalid-agent"),
              description="Calls in progress keep the version they started with.")
async def update_agent(ctx: Ctx) -> Reply:
    name = _name(ctx)
    body: AgentWrite = ctx.body
    if not await _exists(ctx, name):
        raise NotFound(f"no agent named {name!r}")
    await _check(ctx, body.yaml)
    if await asyncio.to_thread(agent_name, body.yaml) != name:
        raise ApiProblem("invalid-agent", f"yaml field 'name' must be {name!r} (the URL)",
                         errors=[{"field": "name", "line": None, "message": f"must be {name!r}"}])
    info = await _put(ctx, name, body.yaml)
    await ctx.services.agent_changes.record(name, info.version, "update", ctx.actor)
    return Reply(await _detail(ctx, name))


@routes.route("DELETE", BASE + "/{name}", scope="agents:write", summary="Delete an agent",
              tag=TAG, limit_class="write", status=204, problems=("not-found",))
async def delete_agent(ctx: Ctx) -> Reply:
    name = _name(ctx)
    info, _, _ = await ctx.services.deps.agents.get(name)
    await ctx.services.deps.agents.delete(name, ctx.actor)
    await ctx.services.agent_changes.record(name, info.version, "delete", ctx.actor)
    return Reply(status=204)


@routes.route("POST", BASE + "/_validate", scope="agents:read", summary="Validate agent YAML",
              tag=TAG, limit_class="read", body=AgentWrite, response=AgentValidation,
              description="Checks the YAML with the same schema as file loading; writes nothing.")
async def validate_agent(ctx: Ctx) -> Reply:
    body: AgentWrite = ctx.body
    errors = await ctx.services.deps.agents.validate(body.yaml)
    return Reply(AgentValidation(valid=not errors, errors=errors))


@routes.route("GET", BASE + "/{name}/history", scope="agents:read",
              summary="Who changed an agent, and when", tag=TAG, response=AgentHistory, problems=("not-found",))
async def agent_history(ctx: Ctx) -> Reply:
    changes = await ctx.services.agent_changes.list(ctx.path["name"])
    if not changes and not await _exists(ctx, ctx.path["name"]):
        raise NotFound(f"no agent named {ctx.path['name']!r}")
    return Reply(AgentHistory.model_validate({"changes": changes}))
