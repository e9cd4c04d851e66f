"""Agent YAML validation with line numbers, shared by the fakes and offered to the daemon.

``validate_agent_yaml`` parses with ruamel.yaml (which keeps line positions), validates
with ``voxd.agents.schema.AgentConfig`` and maps each pydantic error back to the line
of the offending key.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError

from voxd.agents.schema import AgentConfig
from voxd.api.problems import field_path


def _line_of(doc: Any, loc: tuple[Any, ...]) -> int | None:
    """1-based line of the deepest node on ``loc`` that exists in the parsed document."""
    node = doc
    line: int | None = None
    for part in loc:
        lc = getattr(node, "lc", None)
        try:
            if isinstance(part, str) and isinstance(node, dict) and part in node:
                if lc is not None:
                    line = lc.key(part)[0] + 1
                node = node[part]
            elif isinstance(part, int) and isinstance(node, list) and 0 <= part < len(node):
                if lc is not None:
                    line = lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
    return line


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k): _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node


def parse_agent_yaml(text: str) -> tuple[Any, list[dict[str, Any]]]:
    """The round-trip document (keeps comments and positions) or a syntax error."""
    yaml = YAML(typ="rt")
    try:
        doc = yaml.load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line + 1 if mark is not None else None
        return None, [{"field": "(yaml)", "line": line, "message": str(e.problem or e)}]
    except YAMLError as e:
        return None, [{"field": "(yaml)", "line": None, "message": str(e)}]
    if not isinstance(doc, dict):
        return None, [{"field": "(root)", "line": 1, "message": "an agent file is a mapping"}]
    return doc, []


def validate_agent_yaml(text: str) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """(config as a plain dict, []) when valid, else (None, errors with field/line/message)."""
    doc, errors = parse_agent_yaml(text)
    if errors:
        return None, errors
    try:
        config = AgentConfig.model_validate(_plain(doc))
    except ValidationError as e:
        out = []
        for err in e.errors():
            loc = tuple(err["loc"])
            out.append({
                "field": field_path(loc) if loc else "(root)",
                "line": _line_of(doc, loc),
                "message": err["msg"],
            })
        return None, out
    return config.model_dump(mode="json"), []


def agent_name(text: str) -> str | None:
    doc, errors = parse_agent_yaml(text)
    if errors or not isinstance(doc.get("name"), str):
        return None
    return str(doc["name"])
