"""Personal data out of rows as they are written: the one place the store applies the
organisation's redactor (``SqlStore.pii()``, voxd/core/pii.py) to a call or conversation,
a recording's metadata, an analysis, a webhook payload and a function execution.

What is redacted is a copy: the live call keeps the real words (the model needs them to
act, e.g. to take a payment through a function); what leaves the process is clean.
Identifiers, timestamps and routing fields (``voxd.core.pii.KEEP``) are never scanned.
"""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from voxd.core.calllog import CallRecord, ToolCallRecord, Turn
from voxd.core.pii import KEEP, PiiRedactor
from voxd.store.records import Execution, Message


def record(red: PiiRedactor | None, rec: CallRecord) -> CallRecord:
    """``rec`` with its turns, tool calls and metadata redacted (``rec`` itself untouched)."""
    if red is None:
        return rec
    return dataclasses.replace(
        rec, turns=[_turn(red, t) for t in rec.turns], metadata=red.value(rec.metadata, KEEP))


def _turn(red: PiiRedactor, t: Turn) -> Turn:
    return dataclasses.replace(
        t, text=red.text(t.text), heard_text=None if t.heard_text is None else red.text(t.heard_text),
        tool_calls=[tool_call(red, tc) for tc in t.tool_calls])


def tool_call(red: PiiRedactor, tc: ToolCallRecord) -> ToolCallRecord:
    return dataclasses.replace(tc, arguments=red.value(tc.arguments, KEEP), result=red.value(tc.result, KEEP),
                               error=None if tc.error is None else red.text(tc.error))


def value(red: PiiRedactor | None, v: Any) -> Any:
    return v if red is None else red.value(v, KEEP)


def message(red: PiiRedactor | None, m: Message) -> Message:
    """A webhook message whose JSON payload is redacted (re-encoded only when something changed,
    so an untouched payload stays byte for byte what it was)."""
    if red is None:
        return m
    try:
        body = json.loads(m.payload)
    except ValueError:
        clean = red.text(m.payload)
        return m if clean == m.payload else dataclasses.replace(m, payload=clean)
    clean_body = red.value(body, KEEP)
    if clean_body == body:
        return m
    return dataclasses.replace(m, payload=json.dumps(clean_body, separators=(",", ":"), ensure_ascii=False))


def execution(red: PiiRedactor | None, e: Execution) -> Execution:
    if red is None:
        return e
    return dataclasses.replace(e, arguments=red.value(e.arguments, KEEP), result=red.value(e.result, KEEP),
                               error=None if e.error is None else red.text(e.error))
