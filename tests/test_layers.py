"""Imports point downward (../shared/STYLE.md): a module never imports a layer above it.

Every package of voxd and every top-level module is placed here; a new one that is not
fails the test, so the map stays whole. The composition roots (``app``, ``cli``,
``dial``, ``harness``, ``daemon_sources``, ``admin_cli``) may import anything; nothing imports them.
Outside ``voxd/store``, only ``voxd.store.repos`` (the Protocols) is imported: the SQLite
classes are chosen by the composition root alone. Sans-IO ``proto`` imports no asyncio.
"""

from __future__ import annotations

import ast
from pathlib import Path

VOXD = Path(__file__).parents[1] / "voxd"

ROOTS = {"app", "cli", "admin_cli", "chat", "dial", "harness", "daemon_sources", "suites"}
_ALL = {"core", "logs", "config", "proto", "media", "providers", "agents", "tools", "store", "call", "net",
        "webhooks", "ops", "api", "analysis"}

# layer -> the voxd packages it may import (besides itself). Bottom first.
ALLOWED: dict[str, set[str]] = {
    "core": set(),
    "logs": set(),
    "config": {"core"},
    "proto": {"core"},
    "media": {"core", "config", "proto", "logs"},
    "agents": {"core", "config", "providers"},
    "providers": {"core", "config", "proto", "media", "agents", "logs"},
    "store": {"core"},
    "tools": {"core", "config", "providers", "agents", "store", "logs"},
    "call": {"core", "config", "logs", "media", "providers", "agents", "tools", "store"},
    "ops": {"core", "config", "logs", "call"},
    "webhooks": {"core", "config", "logs", "agents", "call", "store"},
    "net": {"core", "config", "logs", "proto", "media", "agents", "call"},
    "analysis": {"core", "config", "logs", "agents", "providers", "call", "store", "webhooks"},
    "api": {"core", "config", "logs", "agents", "tools", "call", "store", "webhooks"},
}
assert set(ALLOWED) == _ALL
# stdlib or third-party modules a layer must not import
FORBIDDEN_EXTERNAL: dict[str, set[str]] = {"proto": {"asyncio", "aiohttp", "aiortc"}, "store": {"aiohttp"}}
STORE_SEAM = "voxd.store.repos"


def _modules(tree: ast.AST) -> list[str]:
    out: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append(node.module)
        elif isinstance(node, ast.Import):
            out += [a.name for a in node.names]
    return out


def layer_of(path: Path, root: Path) -> str:
    return path.relative_to(root).parts[0].removesuffix(".py")


def violations(root: Path) -> list[str]:
    bad: list[str] = []
    for path in sorted(root.rglob("*.py")):
        layer = layer_of(path, root)
        if layer == "__init__" or layer in ROOTS:
            continue
        where = path.relative_to(root.parent)
        if layer not in ALLOWED:
            bad.append(f"{where}: voxd.{layer} is not placed in the layer map (tests/test_layers.py)")
            continue
        for mod in _modules(ast.parse(path.read_text(), str(path))):
            top = mod.split(".")[0]
            if top in FORBIDDEN_EXTERNAL.get(layer, set()):
                bad.append(f"{where} imports {mod}")
            if top != "voxd" or mod == "voxd":
                continue
            target = mod.split(".")[1]
            if target == layer:
                continue
            if target not in ALLOWED[layer]:
                bad.append(f"{where} imports {mod} (voxd.{layer} may use {', '.join(sorted(ALLOWED[layer])) or 'nothing'})")
            elif target == "store" and not mod.startswith(STORE_SEAM):
                bad.append(f"{where} imports {mod}: outside voxd/store only {STORE_SEAM} (the Protocols)")
    return bad


def test_imports_point_downward() -> None:
    bad = violations(VOXD)
    assert not bad, "\n".join(bad)


def test_a_violation_is_reported(tmp_path: Path) -> None:
    root = tmp_path / "voxd"
    cases = {
        "store/bad.py": "from voxd.call.session import CallSession\n",
        "proto/bad.py": "import asyncio\n",
        "config/bad.py": "from voxd.tools import registry\n",
        "net/bad.py": "from voxd.store.keys import ApiKeyRepository\n",
        "webhooks/bad.py": "from voxd.api import app\n",
        "call/bad.py": "from voxd.store.db import Database\n",
        "newlayer/x.py": "x = 1\n",
        "api/fine.py": "from voxd.store.repos import Store\nfrom voxd.call.events import CallEvent\n",
        "app.py": "from voxd.store.db import Database\n",
    }
    for rel, text in cases.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    reported = {line.split(":")[0].split(" ")[0] for line in violations(root)}
    assert reported == {f"voxd/{rel}" for rel in cases if "bad" in rel or "newlayer" in rel}
