"""Loading agent YAML files into validated configs, with errors that point at the line.

An error names the file, the line (where the YAML gives one), the field path and
what was expected, e.g.:

    agents/sales.yaml:14: turn.max_silence_ms: Input should be greater than or equal to 100
"""

from __future__ import annotations

import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from voxd.agents.schema import AgentConfig


@dataclass(frozen=True)
class FieldError:
    file: str
    line: int | None
    field: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"


class AgentLoadError(Exception):
    def __init__(self, errors: list[FieldError]) -> None:
        super().__init__("\n".join(str(e) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class LoadedAgent:
    config: AgentConfig
    version: str  # content hash: calls record the exact file they ran with
    path: Path | None
    text: str

    @property
    def name(self) -> str:
        return self.config.name


def _yaml() -> YAML:
    y = YAML(typ="rt")
    y.allow_duplicate_keys = False
    return y


def _line_of(doc: Any, loc: tuple[int | str, ...]) -> int | None:
    """Best line for a pydantic error location in a ruamel round-trip document."""
    node = doc
    line: int | None = None
    for part in loc:
        if isinstance(node, CommentedMap) and part in node:
            line = node.lc.key(part)[0] + 1
            node = node[part]
        elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
            line = node.lc.item(part)[0] + 1
            node = node[part]
        else:
            break
    return line


def parse_agent(text: str, source: str = "<agent>", default_name: str | None = None) -> LoadedAgent:
    try:
        doc = _yaml().load(io.StringIO(text))
    except MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise AgentLoadError([FieldError(source, line, "", f"YAML syntax: {e.problem}")]) from None
    except Exception as e:  # duplicate keys and other loader complaints
        raise AgentLoadError([FieldError(source, None, "", f"YAML: {e}")]) from None
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise AgentLoadError([FieldError(source, 1, "", "an agent file must be a mapping of fields")])
    data = _plain(doc)
    if default_name and "name" not in data:
        data["name"] = default_name
    try:
        cfg = AgentConfig.model_validate(data)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            field = ".".join(str(p) for p in loc)
            errors.append(FieldError(source, _line_of(doc, loc), field, err["msg"]))
        raise AgentLoadError(errors) from None
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return LoadedAgent(cfg, version, None, text)


def load_agent_file(path: Path) -> LoadedAgent:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AgentLoadError([FieldError(str(path), None, "", f"cannot read: {e}")]) from None
    loaded = parse_agent(text, str(path), default_name=path.stem)
    return LoadedAgent(loaded.config, loaded.version, path, text)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
