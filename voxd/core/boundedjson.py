"""JSON from strangers: parsed with a nesting limit, every failure a ValueError.

The C parser raises RecursionError (not ValueError) on deep enough input, and a
shallower but still absurd document parses into something every later walk pays for.
The control API and the websocket media protocols use this one parser.
"""

from __future__ import annotations

import json
from typing import Any

MAX_DEPTH = 32  # websocket frames: media protocols nest 2-3 levels


class JsonTooDeep(ValueError):
    pass


def depth(value: Any, limit: int) -> int:
    """Nesting depth of parsed JSON (iterative), counting up to ``limit + 1``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict | list):
            deepest = max(deepest, d)
            if deepest > limit:
                return deepest
            stack.extend((x, d + 1) for x in (v.values() if isinstance(v, dict) else v))
    return deepest


def loads(raw: str | bytes, max_depth: int = MAX_DEPTH) -> Any:
    """Parsed JSON; ValueError when invalid, not UTF-8, or nested deeper than ``max_depth``."""
    try:
        data = json.loads(raw)
    except RecursionError:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels") from None
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8: {e}") from None
    if depth(data, max_depth) > max_depth:
        raise JsonTooDeep(f"JSON nested deeper than {max_depth} levels")
    return data
