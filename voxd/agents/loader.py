"""Loading agent YAML into validated configs, with errors that point at the line: the one
loader for files on disk and for YAML sent to the control API.

An error names the file, the line (where the YAML gives one), the field path and
what was expected, e.g.:

    agents/sales.yaml:14: turn.max_silence_ms: Input should be greater than or equal to 100

Hostile YAML costs nothing: a document is size-capped before it is read, nesting depth
and node count are checked on the parser's event stream (which needs no recursion), and
when the document uses aliases the size they expand to is computed on the composed node
graph (each shared node counted once per use, without building anything) before any
Python object is made. A "billion laughs" document is refused in milliseconds.
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
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import (
    AliasEvent,
    CollectionEndEvent,
    CollectionStartEvent,
    MappingStartEvent,
    NodeEvent,
    ScalarEvent,
)
from ruamel.yaml.nodes import MappingNode, Node, SequenceNode

from voxd.agents.schema import OUTBOUND, AgentConfig
from voxd.agents.templates import unknown_placeholders
from voxd.core.secrets import Outbound

MAX_DOCUMENT_BYTES = 256 * 1024  # an agent file; the largest shipped one is about 4 kB
MAX_DEPTH = 64  # nested mappings and sequences
MAX_NODES = 50_000  # YAML nodes, counting every use of an alias


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
    org: str = "default"  # the organisation whose folder it was loaded from (agents/<org>/)

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
        try:
            if isinstance(node, CommentedMap) and part in node:
                node_line = node.lc.key(part)[0] + 1  # a key merged in (<<: *x) has no line of its own
                node = node[part]
            elif isinstance(node, CommentedSeq) and isinstance(part, int) and part < len(node):
                node_line = node.lc.item(part)[0] + 1
                node = node[part]
            else:
                break
        except (KeyError, IndexError, TypeError, AttributeError):
            break
        line = node_line
    return line


class _TooBig(ValueError):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line = line


def _expanded_size(root: Node, cap: int) -> int:
    """Nodes the document has once its aliases are expanded, stopping past ``cap``.
    A node shared through an alias is measured once and counted at every use."""
    sizes: dict[int, int] = {}
    open_: set[int] = set()

    def size(node: Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_:
            raise _TooBig(node.start_mark.line + 1 if node.start_mark else None, "an alias refers to itself")
        open_.add(key)
        total = 1
        if isinstance(node, MappingNode):
            for k, v in node.value:
                total += size(k) + size(v)
                if total > cap:
                    break
        elif isinstance(node, SequenceNode):
            for v in node.value:
                total += size(v)
                if total > cap:
                    break
        open_.discard(key)
        sizes[key] = total
        if total > cap:
            raise _TooBig(node.start_mark.line + 1 if node.start_mark else None,
                          f"the YAML expands to more than {cap} nodes through its aliases (&anchor/*alias); "
                          "write the repeated parts out, or repeat them less")
        return total

    return size(root)


def check_bounds(text: str) -> None:
    """Refuse a document that is too large, too deep or expands too far, before it is
    turned into objects. Raises _TooBig (with a line) or a ruamel YAMLError."""
    size = len(text.encode("utf-8", "surrogatepass"))
    if size > MAX_DOCUMENT_BYTES:
        raise _TooBig(None, f"the document is {size} bytes; at most {MAX_DOCUMENT_BYTES} are accepted")
    nodes = 0
    aliases = False
    anchors: set[str] = set()
    open_: list[list[bool]] = []  # per open collection: [is a mapping, next node is a key]

    def done() -> None:  # a node ended: in a mapping, keys and values alternate
        if open_ and open_[-1][0]:
            open_[-1][1] = not open_[-1][1]

    for ev in _yaml().parse(io.StringIO(text)):
        line = ev.start_mark.line + 1 if ev.start_mark else None
        if isinstance(ev, NodeEvent):
            nodes += 1
            aliases = aliases or isinstance(ev, AliasEvent)
            if nodes > MAX_NODES:
                raise _TooBig(line, f"the document has more than {MAX_NODES} nodes")
            tag = getattr(ev, "tag", None)
            if tag is not None:  # explicit tags: agents need none, ruamel's constructors trip on some
                raise _TooBig(line, f"YAML tags ({tag}) are not accepted in agent files")
            if open_ and open_[-1][0] and open_[-1][1] and not isinstance(ev, ScalarEvent):
                # a list, mapping or alias as a key ("? [a, b]: x"): agents need none, and
                # nested ones cost exponential time to turn into text
                raise _TooBig(line, "mapping keys must be plain words, not lists, mappings or aliases")
            if ev.anchor is not None and not isinstance(ev, AliasEvent):
                if ev.anchor in anchors:
                    raise _TooBig(line, f"the anchor &{ev.anchor} is defined twice")
                anchors.add(ev.anchor)
        if isinstance(ev, CollectionStartEvent):
            open_.append([isinstance(ev, MappingStartEvent), True])
            if len(open_) > MAX_DEPTH:
                raise _TooBig(line, f"the document nests deeper than {MAX_DEPTH} levels")
        elif isinstance(ev, CollectionEndEvent):
            open_.pop()
            done()
        elif isinstance(ev, ScalarEvent | AliasEvent):
            done()
    if aliases:
        root = _yaml().compose(io.StringIO(text))
        if root is not None:
            _expanded_size(root, MAX_NODES)


def load_yaml(text: str, source: str) -> Any:
    """The round-trip document (keeps line numbers) of bounded YAML, or AgentLoadError."""
    try:
        check_bounds(text)
        return _yaml().load(io.StringIO(text))
    except _TooBig as e:
        raise AgentLoadError([FieldError(source, e.line, "", str(e))]) from None
    except MarkedYAMLError as e:
        line = e.problem_mark.line + 1 if e.problem_mark else None
        raise AgentLoadError([FieldError(source, line, "", f"YAML syntax: {e.problem}")]) from None
    except (YAMLError, RecursionError, ValueError, TypeError) as e:  # duplicate keys, ...
        raise AgentLoadError([FieldError(source, None, "", f"YAML: {e}")]) from None
    except Exception as e:  # the YAML library's own failures on hostile input are input errors too
        raise AgentLoadError([FieldError(source, None, "", f"YAML could not be read ({type(e).__name__})")]) from None


def parse_agent(text: str, source: str = "<agent>", default_name: str | None = None,
                outbound: Outbound | None = None) -> LoadedAgent:
    """Validate agent YAML. ``outbound`` (the daemon's egress policy and declared secrets)
    lets validation refuse destinations and secrets the daemon would refuse at run time."""
    doc = load_yaml(text, source)
    if doc is None:
        doc = CommentedMap()
    if not isinstance(doc, dict):
        raise AgentLoadError([FieldError(source, 1, "", "an agent file must be a mapping of fields")])
    data = _plain(doc)
    if default_name and "name" not in data:
        data["name"] = default_name
    try:
        cfg = AgentConfig.model_validate(data, context={OUTBOUND: outbound} if outbound else None)
    except ValidationError as e:
        errors = []
        for err in e.errors():
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
            field = ".".join(str(p) for p in loc)
            errors.append(FieldError(source, _line_of(doc, loc), field, err["msg"]))
        raise AgentLoadError(errors) from None
    unknown = unknown_placeholders(cfg)
    if unknown:
        raise AgentLoadError([FieldError(source, _line_of(doc, u.loc), ".".join(str(p) for p in u.loc), u.message())
                              for u in unknown])
    version = hashlib.sha256(text.encode()).hexdigest()[:12]
    return LoadedAgent(cfg, version, None, text)


def load_agent_file(path: Path, outbound: Outbound | None = None) -> LoadedAgent:
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_DOCUMENT_BYTES + 1)
        if len(raw) > MAX_DOCUMENT_BYTES:
            raise AgentLoadError([FieldError(str(path), None, "", f"the file is larger than {MAX_DOCUMENT_BYTES} bytes")])
        text = raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise AgentLoadError([FieldError(str(path), None, "", f"cannot read: {e}")]) from None
    loaded = parse_agent(text, str(path), default_name=path.stem, outbound=outbound)
    return LoadedAgent(loaded.config, loaded.version, path, text)


def _plain(node: Any) -> Any:
    if isinstance(node, dict):
        return {str(k) if not isinstance(k, int) else k: _plain(v) for k, v in node.items()}
    if isinstance(node, list):
        return [_plain(v) for v in node]
    return node
