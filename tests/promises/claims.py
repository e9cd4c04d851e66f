"""The examples README.md and config/voxd.yaml give, extracted so a test can run them.

An example is a command line in a ```sh block, or an inline code span that is a command
(`voxd ...`, `curl ...`, `sipp ...`, `scripts/x.py ...`), or, in voxd.yaml, a comment line
that is a command indented under its comment (``#   voxd check -c config/voxd.yaml``). Markers in the source say what a test cannot run, and why:

    <!-- claim: skip: REASON -->          the next example (a span or a whole block)
    <!-- claim: engines -->               the next example runs in the engines stage only
    <!-- claim: skip-section: REASON -->  every example until the next heading
    # claim: skip: REASON                 (voxd.yaml) the next example

A marker that applies to nothing is an error, so a marker cannot outlive its example.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

COMMAND = re.compile(
    r"^(?:\./|\.venv/bin/)?(?:voxd|curl|sipp|baresip|linphonec|flite|sox|systemctl|sudo)\s+\S"
    r"|^(?:\./)?scripts/[\w.-]+\.(?:sh|py)(?:\s|$)"
)
MARKER = re.compile(r"<!--\s*claim:\s*(.*?)\s*-->")
TOKEN = re.compile(r"<!--\s*claim:\s*(.*?)\s*-->|`([^`\n]+)`")
SHELL_LANGS = {"sh", "bash", "shell", "console"}


@dataclass(frozen=True)
class Example:
    source: str  # README.md or config/voxd.yaml
    line: int
    command: str
    mode: str = "run"  # run | engines | skip
    reason: str = ""

    def __str__(self) -> str:
        return f"{self.source}:{self.line}: {self.command}"


class MarkerError(ValueError):
    pass


def _parse_marker(text: str, where: str) -> tuple[str, str]:
    kind, _, reason = text.partition(":")
    kind, reason = kind.strip(), reason.strip()
    if kind not in ("skip", "engines", "skip-section"):
        raise MarkerError(f"{where}: unknown claim marker {text!r}")
    if kind.startswith("skip") and not reason:
        raise MarkerError(f"{where}: a skip marker must say why")
    return kind, reason


def _commands(lines: list[tuple[int, str]]) -> list[tuple[int, str]]:
    """Command lines of a shell block: comments dropped, backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for n, raw in lines:
        text = raw.strip()
        if pending is None and (not text or text.startswith("#")):
            continue
        if pending is not None:
            n, text = pending[0], pending[1] + " " + text
        if text.endswith("\\"):
            pending = (n, text[:-1].rstrip())
            continue
        pending = None
        out.append((n, text))
    return out


def markdown_examples(path: Path, name: str = "README.md") -> list[Example]:
    lines = path.read_text().splitlines()
    out: list[Example] = []
    pending: tuple[str, str, int] | None = None  # (kind, reason, line)
    section: str | None = None
    fence: str | None = None
    block: list[tuple[int, str]] = []
    block_marker: tuple[str, str, int] | None = None

    def take(n: int) -> tuple[str, str]:
        nonlocal pending
        if section is not None:
            return "skip", section
        if pending is None:
            return "run", ""
        kind, reason, _ = pending
        pending = None
        return ("engines", "") if kind == "engines" else ("skip", reason)

    for n, line in enumerate(lines, 1):
        if fence is not None:
            if line.strip().startswith("```"):
                if fence in SHELL_LANGS:
                    for cn, cmd in _commands(block):
                        mode, reason = ("skip", section) if section else (
                            block_marker_mode(block_marker))
                        out.append(Example(name, cn, cmd, mode, reason))
                elif block_marker is not None:
                    raise MarkerError(f"{name}:{block_marker[2]}: a claim marker before a {fence or 'plain'} block")
                fence, block, block_marker = None, [], None
            else:
                block.append((n, line))
            continue
        if line.strip().startswith("```"):
            fence = line.strip()[3:].strip()
            block_marker, pending = pending, None
            continue
        if line.startswith("#"):
            if pending is not None:
                raise MarkerError(f"{name}:{pending[2]}: claim marker applies to no example")
            section = None
        for m in TOKEN.finditer(line):
            if m[1] is not None:
                kind, reason = _parse_marker(m[1], f"{name}:{n}")
                if kind == "skip-section":
                    section = reason
                else:
                    if pending is not None:
                        raise MarkerError(f"{name}:{pending[2]}: claim marker applies to no example")
                    pending = (kind, reason, n)
            elif COMMAND.match(m[2]):
                mode, reason = take(n)
                out.append(Example(name, n, m[2], mode, reason))
        if not line.strip() and pending is not None:
            raise MarkerError(f"{name}:{pending[2]}: claim marker applies to no example")
    return out


def block_marker_mode(marker: tuple[str, str, int] | None) -> tuple[str, str]:
    if marker is None:
        return "run", ""
    return ("engines", "") if marker[0] == "engines" else ("skip", marker[1])


def yaml_comment_examples(path: Path, name: str = "config/voxd.yaml") -> list[Example]:
    out: list[Example] = []
    pending: tuple[str, str] | None = None
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if "#" not in line:
            continue
        raw = line.split("#", 1)[1]
        comment = raw.strip()
        if comment.startswith("claim:"):
            pending = _parse_marker(comment[len("claim:"):], f"{name}:{n}")
            continue
        if raw.startswith("   ") and COMMAND.match(comment):  # an example is indented under its comment
            kind, reason = pending or ("run", "")
            pending = None
            out.append(Example(name, n, comment, "engines" if kind == "engines" else ("skip" if kind != "run" else "run"),
                               reason))
    return out


API_PATH = re.compile(r"(/api/v1/[A-Za-z0-9_{}./…-]*[A-Za-z0-9_}…])")
LOCAL_URL = re.compile(r"(https?)://127\.0\.0\.1:8080(/[^\s`)\"']*)")


def api_paths(text: str) -> set[str]:
    """Every /api/v1/... path the text names: ``{name}`` and ``prefix_…`` stand for a value."""
    return {m.rstrip(".") for m in API_PATH.findall(text)}


def local_urls(text: str) -> set[str]:
    """Every http://127.0.0.1:8080/... page the text tells a reader to open."""
    return {m[1] for m in LOCAL_URL.findall(text)}


def path_pattern(path: str) -> str:
    """A route path as a regex, each {parameter} one segment."""
    return "^" + re.sub(r"\\{\w+\\}", "[^/]+", re.escape(path)) + "$"


def concrete(path: str) -> str:
    """A mentioned path with a value in each placeholder."""
    return re.sub(r"\{\w+\}", "x1", path).replace("…", "x1")
