"""Imports point downward (../shared/STYLE.md): a module never imports a layer above it."""

from __future__ import annotations

import ast
from pathlib import Path

VOXD = Path(__file__).parents[1] / "voxd"

# layer -> the voxd packages it must not import
FORBIDDEN = {
    "core": {"proto", "net", "media", "call", "providers", "tools", "agents", "api", "store", "webhooks", "ops", "app", "config"},
    "proto": {"net", "media", "call", "providers", "tools", "agents", "api", "store", "webhooks", "app"},
    "media": {"net", "call", "providers", "tools", "agents", "api", "store", "webhooks", "app"},
    "providers": {"net", "call", "api", "store", "webhooks", "app"},
    "tools": {"net", "call", "api", "app"},
    "agents": {"net", "call", "api", "store", "webhooks", "app"},
    "call": {"net", "api", "app"},
    "store": {"net", "api", "app"},
    "net": {"api", "store", "webhooks", "app"},
}


def imported(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("voxd."):
            out.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            out |= {a.name.split(".")[1] for a in node.names if a.name.startswith("voxd.")}
    return out


def test_imports_point_downward() -> None:
    bad = []
    for layer, banned in FORBIDDEN.items():
        for path in sorted((VOXD / layer).rglob("*.py")):
            hits = imported(path) & banned
            if hits:
                bad.append(f"{path.relative_to(VOXD.parent)} imports voxd.{', voxd.'.join(sorted(hits))}")
    assert not bad, "\n".join(bad)
