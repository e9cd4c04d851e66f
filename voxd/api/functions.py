"""``/api/v1/functions``: the registry (built-in and custom), custom schemas, test runs."""

from __future__ import annotations

import re
from typing import Any

import jsonschema

from voxd.api.models import (
    FUNCTION_NAME_PATTERN,
    FUNCTION_NAME_RE,
    ExecuteRequest,
    Execution,
    ExecutionList,
    FunctionCreate,
    FunctionInfo,
    FunctionList,
    FunctionUpdate,
)
from voxd.api.problems import ApiProblem, validation_problem
from voxd.api.routing import Ctx, Reply, RouteTable
from voxd.core.errors import NotFound
from voxd.core.redact import default_redactor

routes = RouteTable(params={"name": FUNCTION_NAME_RE})
TAG = "functions"
BASE = "/api/v1/functions"


def _custom_info(rec: dict[str, Any]) -> FunctionInfo:
    return FunctionInfo(builtin=False, **rec)


async def _builtin(ctx: Ctx, name: str) -> dict[str, Any] | None:
    try:
        info = await ctx.services.deps.functions.get(name)
    except NotFound:
        return None
    return info if info.get("builtin", True) else None


async def _find(ctx: Ctx, name: str) -> tuple[FunctionInfo, dict[str, Any] | None]:
    """The function and, for a custom one, its stored record."""
    if not re.fullmatch(FUNCTION_NAME_PATTERN, name):
        raise NotFound(f"no function named {name!r}")
    rec = await ctx.services.functions.get(name)
    if rec is not None:
        return _custom_info(rec), rec
    info = await _builtin(ctx, name)
    if info is None:
        raise NotFound(f"no function named {name!r}")
    return FunctionInfo(name=info["name"], description=info.get("description", ""),
                        parameters=info.get("parameters", {}), builtin=True), None


def _check_schema(parameters: dict[str, Any]) -> None:
    try:
        jsonschema.Draft202012Validator.check_schema(parameters)
    except jsonschema.SchemaError as e:
        where = "parameters" + "".join(f".{p}" for p in e.path)
        raise validation_problem([{"field": where, "message": e.message}], "body") from e
    if parameters.get("type") != "object":
        raise validation_problem(
            [{"field": "parameters.type", "message": "must be 'object'"}], "body")


@routes.route("GET", BASE, scope="functions:read", summary="List functions", tag=TAG,
              response=FunctionList)
async def list_functions(ctx: Ctx) -> Reply:
    custom = {r["name"]: _custom_info(r) for r in await ctx.services.functions.list()}
    out = [
        FunctionInfo(name=f["name"], description=f.get("description", ""),
                     parameters=f.get("parameters", {}), builtin=True)
        for f in await ctx.services.deps.functions.list()
        if f.get("builtin", True) and f["name"] not in custom
    ]
    out += custom.values()
    return Reply(FunctionList(functions=sorted(out, key=lambda f: f.name)))


@routes.route("GET", BASE + "/{name}", scope="functions:read", summary="Get a function",
              tag=TAG, response=FunctionInfo, problems=("not-found",))
async def get_function(ctx: Ctx) -> Reply:
    info, _ = await _find(ctx, ctx.path["name"])
    return Reply(info)


@routes.route("POST", BASE, scope="functions:write", summary="Register a custom function",
              tag=TAG, limit_class="write", body=FunctionCreate, response=FunctionInfo,
              status=201, problems=("conflict",))
async def create_function(ctx: Ctx) -> Reply:
    body: FunctionCreate = ctx.body
    _check_schema(body.parameters)
    if await ctx.services.functions.get(body.name) or await _builtin(ctx, body.name):
        raise ApiProblem("conflict", f"a function named {body.name!r} already exists")
    rec = await ctx.services.functions.put(
        body.name, body.description, body.parameters, body.http.model_dump(), ctx.actor)
    return Reply(_custom_info(rec), status=201, headers={"Location": f"{BASE}/{body.name}"})


@routes.route("PUT", BASE + "/{name}", scope="functions:write",
              summary="Replace a custom function", tag=TAG, limit_class="write",
              body=FunctionUpdate, response=FunctionInfo, problems=("not-found", "conflict"))
async def update_function(ctx: Ctx) -> Reply:
    body: FunctionUpdate = ctx.body
    info, rec = await _find(ctx, ctx.path["name"])
    if rec is None:
        raise ApiProblem("conflict", f"{info.name!r} is built in and cannot be changed")
    _check_schema(body.parameters)
    rec = await ctx.services.functions.put(
        info.name, body.description, body.parameters, body.http.model_dump(), ctx.actor)
    return Reply(_custom_info(rec))


@routes.route("DELETE", BASE + "/{name}", scope="functions:write",
              summary="Delete a custom function", tag=TAG, limit_class="write", status=204,
              problems=("not-found", "conflict"))
async def delete_function(ctx: Ctx) -> Reply:
    info, rec = await _find(ctx, ctx.path["name"])
    if rec is None:
        raise ApiProblem("conflict", f"{info.name!r} is built in and cannot be deleted")
    await ctx.services.functions.delete(info.name)
    return Reply(status=204)


@routes.route("POST", BASE + "/{name}/execute", scope="functions:execute",
              summary="Run a function once with test arguments", tag=TAG,
              limit_class="execute", body=ExecuteRequest, response=Execution,
              problems=("not-found",),
              description="Arguments are validated against the function's JSON Schema first. "
              "A function that fails still returns 200 with `error` set; every run is logged.")
async def execute_function(ctx: Ctx) -> Reply:
    body: ExecuteRequest = ctx.body
    info, rec = await _find(ctx, ctx.path["name"])
    validator = jsonschema.Draft202012Validator(info.parameters)
    errors = [
        {"field": "arguments" + "".join(f".{p}" for p in err.path), "message": err.message}
        for err in validator.iter_errors(body.arguments)
    ]
    if errors:
        raise validation_problem(errors, "body")
    out = await ctx.services.deps.functions.execute(info.name, body.arguments, rec)
    logged = await ctx.services.functions.log_execution(
        info.name, default_redactor(body.arguments), default_redactor(out.get("result")), out.get("error"),
        float(out.get("duration_ms", 0.0)), ctx.actor)
    return Reply(Execution.model_validate(logged))


@routes.route("GET", BASE + "/{name}/executions", scope="functions:read",
              summary="Execution log of a function", tag=TAG, response=ExecutionList, problems=("not-found",))
async def function_executions(ctx: Ctx) -> Reply:
    rows = await ctx.services.functions.executions(ctx.path["name"])
    if not rows:
        await _find(ctx, ctx.path["name"])  # 404 for a function this organisation does not have
    return Reply(ExecutionList.model_validate({"executions": rows}))
