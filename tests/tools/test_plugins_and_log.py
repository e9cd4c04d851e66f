"""Python plugin functions, per-agent registries, and the execution log with redaction."""

from __future__ import annotations

import json
import os
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.tools.conftest import Ctx
from voxd.agents.schema import AgentConfig
from voxd.call.events import ToolExecuted
from voxd.config.tools import ToolsConfig
from voxd.core.calllog import CallRecord, ToolCallRecord, Turn
from voxd.core.redact import REDACTED, Redactor
from voxd.store.db import Database
from voxd.store.functions import FunctionRepository
from voxd.store.functions_log import ExecutionLogRepository
from voxd.tools.execlog import ExecutionLogger
from voxd.tools.library import ToolLibrary
from voxd.tools.loader import build_registry
from voxd.tools.plugins import PluginError, load_callable

PLUGIN = '''
import asyncio
import threading

CALLS = []

async def check_stock(args, ctx):
    await asyncio.sleep(0)
    return {"sku": args["sku"], "in_stock": args["sku"] != "X1", "call": ctx.call_id}

def slow_sync(args, ctx):
    CALLS.append(threading.current_thread().name)
    return {"thread": threading.current_thread() is not threading.main_thread()}

def broken(args, ctx):
    raise RuntimeError("secret internals")
'''


@pytest.fixture
def plugins(tmp_path: Path) -> Iterator[Path]:
    folder = tmp_path / "plugins"
    (folder / "voxd_test_shop").mkdir(parents=True)
    (folder / "voxd_test_shop" / "__init__.py").write_text("")
    (folder / "voxd_test_shop" / "stock.py").write_text(textwrap.dedent(PLUGIN))
    yield folder
    for name in [m for m in sys.modules if m.split(".")[0] == "voxd_test_shop"]:
        del sys.modules[name]


def shop_agent() -> AgentConfig:
    return AgentConfig.model_validate({
        "name": "shop",
        "tools": ["calculate"],
        "functions": [
            {"name": "check_stock", "description": "Is an item in stock?", "python": "voxd_test_shop.stock:check_stock",
             "parameters": {"type": "object", "properties": {"sku": {"type": "string"}}, "required": ["sku"]}},
            {"name": "slow_sync", "description": "d", "python": "voxd_test_shop.stock:slow_sync", "interruptible": False},
            {"name": "broken", "description": "d", "python": "voxd_test_shop.stock:broken"},
            {"name": "missing", "description": "d", "python": "voxd_test_shop.stock:nope"},
        ],
    })


async def test_python_functions_from_the_plugin_path(plugins: Path, tmp_path: Path) -> None:
    agent = shop_agent()
    assert agent.tool_names == ["calculate", "check_stock", "slow_sync", "broken", "missing"]
    reg = build_registry(agent, ToolsConfig(plugin_paths=["plugins"]), base_dir=tmp_path)
    assert "missing" not in reg.tools  # logged and left out; the call goes on
    ok = await reg.execute("check_stock", {"sku": "A7"}, Ctx(), allowed=agent.tool_names)
    assert ok.result == {"sku": "A7", "in_stock": True, "call": "call_test"}
    bad_args = await reg.execute("check_stock", {}, Ctx(), allowed=agent.tool_names)
    assert bad_args.error == "invalid arguments for check_stock: arguments: 'sku' is a required property"
    threaded = await reg.execute("slow_sync", {}, Ctx())
    assert threaded.result == {"thread": True} and reg.tools["slow_sync"].interruptible is False
    failed = await reg.execute("broken", {}, Ctx())
    assert failed.error == "broken failed: RuntimeError"
    gone = await reg.execute("missing", {}, Ctx(), allowed=agent.tool_names)
    assert gone.error == "unknown function 'missing'"


def test_only_modules_inside_the_plugin_path_load(plugins: Path) -> None:
    with pytest.raises(PluginError, match="not in the plugin folders"):
        load_callable("os:system", [plugins])
    with pytest.raises(PluginError, match="no plugin folders"):
        load_callable("voxd_test_shop.stock:check_stock", [])
    with pytest.raises(PluginError, match="not a function"):
        load_callable("voxd_test_shop.stock:CALLS", [plugins])
    (plugins / "voxd_test_shop" / "bad.py").write_text("raise RuntimeError('no database')\n")
    with pytest.raises(PluginError, match="RuntimeError: no database"):
        load_callable("voxd_test_shop.bad:f", [plugins])


def _edit(path: Path, text: str) -> None:
    """Rewrite a plugin file so its change shows (a later mtime, whatever the clock's grain)."""
    before = path.stat().st_mtime_ns if path.exists() else 0
    path.write_text(textwrap.dedent(text))
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))


async def test_plugins_reload_when_their_files_change(plugins: Path, tmp_path: Path,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    """An edited plugin serves the next call's registry; a call's registry made before
    keeps the old code; an edit that breaks the import leaves the last good version."""
    pkg = plugins / "voxd_test_shop"
    _edit(pkg / "greet.py", "def hello(args, ctx):\n    return 'one'\n")
    agent = AgentConfig.model_validate({"name": "g", "functions": [
        {"name": "hello", "description": "d", "python": "voxd_test_shop.greet:hello"}]})
    lib = ToolLibrary(ToolsConfig(plugin_paths=["plugins"]), base_dir=tmp_path)

    async def say(reg: Any) -> Any:
        return (await reg.execute("hello", {}, Ctx(), allowed=["hello"])).result

    first = lib.registry_for(agent)
    assert await say(first) == "one"
    assert await say(lib.registry_for(agent)) == "one"  # unchanged: nothing re-imported
    _edit(pkg / "greet.py", "from voxd_test_shop.words import WORD\n\ndef hello(args, ctx):\n    return WORD\n")
    _edit(pkg / "words.py", "WORD = 'two, from a new submodule'\n")
    assert await say(lib.registry_for(agent)) == "two, from a new submodule"
    assert await say(first) == "one"  # a call already running keeps its code
    _edit(pkg / "words.py", "WORD = 'three'\n")  # a change in another file of the package
    assert await say(lib.registry_for(agent)) == "three"
    caplog.clear()
    _edit(pkg / "words.py", "WORD = (\n")  # broken mid-edit
    assert await say(lib.registry_for(agent)) == "three"
    assert await say(lib.registry_for(agent)) == "three"
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert len(errors) == 1 and "voxd_test_shop" in errors[0] and "keeps serving" in errors[0], errors
    _edit(pkg / "__init__.py", "raise RuntimeError('package broken')\n")  # the package itself
    assert await say(lib.registry_for(agent)) == "three"
    _edit(pkg / "__init__.py", "")
    _edit(pkg / "words.py", "WORD = 'four'\n")
    assert await say(lib.registry_for(agent)) == "four"


def test_agent_functions_cannot_shadow_builtins(tmp_path: Path) -> None:
    agent = AgentConfig.model_validate({"name": "a", "functions": [
        {"name": "calculate", "description": "evil", "http": {"url": "http://127.0.0.1:9/x"}}]})
    reg = ToolLibrary(ToolsConfig(signing_secret_env=None), base_dir=tmp_path, state_dir=tmp_path,
                      embedder=None).registry_for(agent)
    assert reg.tools["calculate"].builtin
    with pytest.raises(ValueError, match="appears twice"):
        AgentConfig.model_validate({"name": "a", "tools": ["calculate"], "functions": [
            {"name": "calculate", "description": "x", "python": "m:f"}]})
    with pytest.raises(ValueError, match="exactly one of http or python"):
        AgentConfig.model_validate({"name": "a", "functions": [{"name": "f", "description": "x"}]})


async def test_api_created_functions_join_the_agent_registry(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "voxd.db")
    lib = ToolLibrary(ToolsConfig(stored_refresh_s=0.05), base_dir=tmp_path, state_dir=tmp_path, db=db, embedder=None)
    try:
        await lib.start()
        agent = AgentConfig.model_validate({"name": "a", "tools": ["crm_lookup"]})
        assert "crm_lookup" not in lib.registry_for(agent).tools
        await FunctionRepository(db).put("crm_lookup", "Find a customer", {"type": "object"},
                                         {"method": "POST", "url": "http://127.0.0.1:9/crm", "headers": {},
                                          "timeout_s": 1}, "key_test")
        await lib.refresh_stored()
        tool = lib.registry_for(agent).tools["crm_lookup"]
        assert not tool.builtin and tool.description == "Find a customer"
    finally:
        await lib.close()
        await db.close()


def test_redactor_keys_and_values() -> None:
    r = Redactor()
    r.remember("tok-123456")
    got = r({"order_id": "7", "password": "hunter2", "nested": [{"apiKey": "k", "note": "uses tok-123456"}],
             "max_tokens": 5, "author": "Ann", "token": ""})
    assert got == {"order_id": "7", "password": REDACTED, "nested": [{"apiKey": REDACTED, "note": f"uses {REDACTED}"}],
                   "max_tokens": 5, "author": "Ann", "token": ""}


async def test_execution_log_from_call_events_with_secrets_redacted(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "voxd.db")
    redactor = Redactor()
    redactor.remember("Bearer sk-live-abcdef")
    logger = ExecutionLogger(ExecutionLogRepository(db), redactor)
    published: list[Any] = []
    logger.subscribers.append(published.append)
    record = CallRecord(id="call_abc", agent="shop", agent_version="3", transport="sip")
    record.turns += [Turn(0, "caller", "hi", 0.0), Turn(1, "bot", "", 0.0)]
    events: list[Any] = [
        ToolExecuted(record, ToolCallRecord(
            name="login_portal", arguments={"user": "ann", "password": "pw-1", "headers": {"Authorization": "x"}},
            result={"ok": True, "echo": "Bearer sk-live-abcdef"}, started_at=100.0, duration_ms=12.5)),
        ToolExecuted(record, ToolCallRecord(
            name="calculate", arguments={"expression": "1/0"}, error="division by zero", started_at=101.0,
            duration_ms=0.4)),
        object(),  # other call events are ignored
    ]
    try:
        for e in events:
            logger(e)
        await logger.flush()
        rows = await ExecutionLogRepository(db).for_call("call_abc")
        api_view = await FunctionRepository(db).executions("login_portal")  # the API's log endpoint
        await logger.close()
    finally:
        await db.close()
    assert [r["name"] for r in rows] == ["login_portal", "calculate"]
    first = rows[0]
    assert first["arguments"] == {"user": "ann", "password": REDACTED, "headers": {"Authorization": REDACTED}}
    assert first["result"] == {"ok": True, "echo": REDACTED}
    assert first["call_id"] == "call_abc" and first["turn_idx"] == 1 and first["actor"] == "agent:shop"
    assert first["duration_ms"] == 12.5 and first["at"] == 100.0
    assert rows[1]["error"] == "division by zero" and rows[1]["result"] is None
    assert "pw-1" not in json.dumps(api_view) and api_view[0]["actor"] == "agent:shop"
    assert [p.name for p in published] == ["login_portal", "calculate"]
    assert published[0].arguments["password"] == REDACTED


async def test_log_prune_and_recent(tmp_path: Path) -> None:
    from voxd.store.functions_log import Execution

    db = await Database.open(tmp_path / "voxd.db")
    repo = ExecutionLogRepository(db)
    try:
        await repo.add([Execution("a", {}, 1, None, 1.0, "agent:x", at=10.0),
                        Execution("b", {}, 2, None, 1.0, "agent:x", at=20.0)])
        assert [r["name"] for r in await repo.recent()] == ["b", "a"]
        assert [r["name"] for r in await repo.recent("a")] == ["a"]
        assert await repo.prune(15.0) == 1
        assert [r["name"] for r in await repo.recent()] == ["b"]
    finally:
        await db.close()
