"""Python functions: ``module:function`` references loaded from the plugin folders.

Only modules whose top-level package lives in one of the configured folders load,
so an agent file cannot turn ``os:system`` into a function. The callable gets
``(arguments, context)``; a plain (non-async) function runs in a worker thread so a
slow plugin cannot stall the event loop.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import inspect
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from voxd.tools.registry import Tool, ToolContext


class PluginError(Exception):
    """A Python function reference that cannot be loaded."""


def _load_top(name: str, folders: list[Path]) -> None:
    spec = importlib.machinery.PathFinder.find_spec(name, [str(f) for f in folders])
    if spec is None or spec.origin is None:
        raise PluginError(f"module {name!r} is not in the plugin folders {[str(f) for f in folders]}")
    have = sys.modules.get(name)
    if have is not None:
        if getattr(have, "__file__", None) != spec.origin:
            raise PluginError(f"module {name!r} is already imported from elsewhere; rename the plugin")
        return
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        assert spec.loader is not None
        spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(name, None)
        raise PluginError(f"module {name!r} failed to import: {type(e).__name__}: {e}") from e


def load_callable(ref: str, folders: list[Path]) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{ref!r} is not 'module:function'")
    if not folders:
        raise PluginError("no plugin folders are configured (tools.plugin_paths)")
    _load_top(module_name.split(".")[0], folders)
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise PluginError(f"cannot import {module_name!r}: {e}") from e
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise PluginError(f"{ref!r} is not a function")
    return fn  # type: ignore[no-any-return]


def python_tool(
    name: str,
    description: str,
    parameters: dict[str, Any],
    ref: str,
    folders: list[Path],
    *,
    timeout_s: float = 10.0,
    interruptible: bool = True,
) -> Tool:
    fn = load_callable(ref, folders)

    async def handler(args: dict[str, Any], ctx: ToolContext) -> Any:
        if inspect.iscoroutinefunction(fn):
            return await fn(args, ctx)
        result = await asyncio.to_thread(fn, args, ctx)
        if inspect.isawaitable(result):
            result = await result
        return result

    return Tool(name, description, parameters, handler, timeout_s=timeout_s,
                interruptible=interruptible, builtin=False)
