"""Agent YAML validation for the control API, through the daemon's own loader.

``validate_agent_yaml`` is ``voxd.agents.loader.parse_agent`` (size, depth and alias
bounds, then the schema) with its errors in the API's shape: ``{"field", "line",
"message"}``, where a YAML-level problem has the field ``(yaml)``. The API calls these
off the event loop (``asyncio.to_thread``): even bounded YAML takes CPU to parse.
"""

from __future__ import annotations

from typing import Any

from voxd.agents.loader import AgentLoadError, FieldError, load_yaml, parse_agent
from voxd.core.secrets import Outbound


def api_errors(errors: list[FieldError]) -> list[dict[str, Any]]:
    return [{"field": e.field or "(yaml)", "line": e.line, "message": e.message} for e in errors]


def validate_agent_yaml(text: str, outbound: Outbound | None = None) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(config as a plain dict, []) when valid, else (None, errors with field/line/message)."""
    try:
        loaded = parse_agent(text, "agent.yaml", outbound=outbound)
    except AgentLoadError as e:
        return None, api_errors(e.errors)
    return loaded.config.model_dump(mode="json"), []


def agent_name(text: str) -> str | None:
    """The document's ``name`` (bounded parse; no schema), or None."""
    try:
        doc = load_yaml(text, "agent.yaml")
    except AgentLoadError:
        return None
    name = doc.get("name") if isinstance(doc, dict) else None
    return name if isinstance(name, str) else None
