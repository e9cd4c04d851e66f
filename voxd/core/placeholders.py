"""``{name}`` placeholders in agent text: a tiny substitution of our own.

A placeholder is ``{`` a name ``}``, where a name is letters, digits and ``_`` (not
starting with a digit), optionally dotted (``{result.city}``: a field of a value).
``{{`` and ``}}`` stand for literal braces. Any other brace is just a character, so a
system prompt holding JSON (``{"a": 1}``) needs no escaping.

This is deliberately not ``str.format``: a template is written by an agent's author
but its values come from callers and CRMs, and nothing here looks up attributes,
indexes or format specs. A value is inserted as text and never read as a template.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

NAME = r"[A-Za-z_][A-Za-z0-9_]*"
NAME_RE = re.compile(rf"^{NAME}$")
_TOKEN = re.compile(rf"\{{\{{|\}}\}}|\{{({NAME}(?:\.{NAME})*)\}}")

Lookup = Callable[[str], str | None]


def names(template: str) -> Iterator[str]:
    """Each placeholder's name (dotted as written), in order, escapes skipped."""
    for m in _TOKEN.finditer(template):
        if m.group(1) is not None:
            yield m.group(1)


def escape(text: str) -> str:
    """``text`` as a template that renders back to itself."""
    return text.replace("{", "{{").replace("}", "}}")


def _text(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return value if isinstance(value, str) else str(value)


def dotted(values: Mapping[str, Any]) -> Lookup:
    """A lookup into ``values`` that follows dots through nested mappings only."""

    def lookup(name: str) -> str | None:
        cur: Any = values
        for part in name.split("."):
            if isinstance(cur, Mapping) and part in cur:
                cur = cur[part]
            else:
                return None
        return None if cur is None else _text(cur)

    return lookup


def fill(template: str, values: Mapping[str, Any] | Lookup, *, partial: bool = False) -> str:
    """``template`` with its placeholders replaced.

    Final (default): ``{{``/``}}`` become braces, a placeholder with no value becomes ''.
    ``partial``: only names with a value are replaced (their text escaped, so a later
    final fill keeps it literal); other placeholders and the escapes stay as written,
    for a template that is filled again later (a dialog reply gets its slots then)."""
    lookup = values if callable(values) else dotted(values)

    def one(m: re.Match[str]) -> str:
        name = m.group(1)
        if name is None:
            return m.group(0) if partial else m.group(0)[0]
        value = lookup(name)
        if value is None:
            return m.group(0) if partial else ""
        return escape(value) if partial else value

    return _TOKEN.sub(one, template)
