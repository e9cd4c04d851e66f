"""Python functions: ``module:function`` references loaded from the plugin folders.

Only modules whose top-level package lives in one of the configured folders load,
so an agent file cannot turn ``os:system`` into a function. The callable gets
``(arguments, context)``; a plain (non-async) function runs in a worker thread so a
slow plugin cannot stall the event loop.

Plugins reload live: each call's registry asks for its functions again, and a plugin
whose files changed since it was imported (any ``.py`` of its package, by mtime and
size) is imported afresh, package and submodules. Calls already running keep the
code they started with. A changed plugin that fails to import is logged once and the
version already loaded keeps serving, as with agent files.
"""

from __future__ import annotations

import asyncio
import importlib
import importlib.machinery
import importlib.util
import inspect
import logging
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

from voxd.tools.registry import Tool, ToolContext


class PluginError(Exception):
    """A Python function reference that cannot be loaded."""


log = logging.getLogger(__name__)

Stamp = tuple[tuple[str, int, int], ...]
_stamps: dict[str, Stamp] = {}  # top-level plugin module -> its files as last imported (or tried)


def _stamp(spec: importlib.machinery.ModuleSpec) -> Stamp:
    """The plugin's source files with their mtimes and sizes: a package's whole tree."""
    files = [Path(loc).rglob("*.py") for loc in spec.submodule_search_locations or []]
    paths = sorted(p for tree in files for p in tree) if files else [Path(str(spec.origin))]
    out = []
    for p in paths:
        try:
            st = p.stat()
        except OSError:
            continue
        out.append((str(p), st.st_mtime_ns, st.st_size))
    return tuple(out)


def _exec(name: str, spec: importlib.machinery.ModuleSpec) -> None:
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        assert spec.loader is not None
        spec.loader.exec_module(module)
    except BaseException as e:
        sys.modules.pop(name, None)
        raise PluginError(f"module {name!r} failed to import: {type(e).__name__}: {e}") from e


def _load_top(name: str, folders: list[Path]) -> dict[str, ModuleType] | None:
    """Import the plugin's top-level module, or import it afresh if its files changed;
    then returns the modules it replaced (to put back if the rest fails), else None."""
    spec = importlib.machinery.PathFinder.find_spec(name, [str(f) for f in folders])
    if spec is None or spec.origin is None:
        raise PluginError(f"module {name!r} is not in the plugin folders {[str(f) for f in folders]}")
    stamp = _stamp(spec)
    have = sys.modules.get(name)
    if have is None:
        _stamps[name] = stamp
        _exec(name, spec)
        return None
    if getattr(have, "__file__", None) != spec.origin:
        raise PluginError(f"module {name!r} is already imported from elsewhere; rename the plugin")
    if _stamps.get(name, stamp) == stamp:
        return None
    _stamps[name] = stamp  # tried once per change, not once per call
    old = {k: m for k, m in sys.modules.items() if k == name or k.startswith(name + ".")}
    for k in old:
        del sys.modules[k]
    importlib.invalidate_caches()
    try:
        _exec(name, spec)
    except PluginError as e:
        _keep(name, old, e)
        return None
    return old


def _keep(name: str, old: dict[str, ModuleType], err: Exception) -> None:
    for k in [k for k in sys.modules if k == name or k.startswith(name + ".")]:
        del sys.modules[k]
    sys.modules.update(old)
    log.error("plugin %s changed but %s; the version already loaded keeps serving", name, err)


def load_callable(ref: str, folders: list[Path]) -> Callable[..., Any]:
    module_name, _, attr = ref.partition(":")
    if not module_name or not attr:
        raise PluginError(f"{ref!r} is not 'module:function'")
    if not folders:
        raise PluginError("no plugin folders are configured (tools.plugin_paths)")
    top = module_name.split(".")[0]
    replaced = _load_top(top, folders)
    try:
        module = importlib.import_module(module_name)
    except Exception as e:  # a plugin's own code may raise anything while importing
        if replaced is None:
            raise PluginError(f"cannot import {module_name!r}: {type(e).__name__}: {e}") from e
        _keep(top, replaced, PluginError(f"{module_name!r} failed to import: {type(e).__name__}: {e}"))
        return load_callable(ref, folders)
    if replaced is not None:
        log.info("plugin %s reloaded (its files changed)", top)
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
