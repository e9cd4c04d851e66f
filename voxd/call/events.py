"""Typed events a call session publishes to observers (API, webhooks, metrics, UI)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxd.core.calllog import CallRecord, DtmfRecord, ToolCallRecord, Turn


@dataclass(frozen=True)
class CallStarted:
    record: CallRecord


@dataclass(frozen=True)
class TurnCompleted:
    record: CallRecord
    turn: Turn


@dataclass(frozen=True)
class CallerSpeaking:
    """Caller speech confirmed (for live UIs); `interrupting` if the bot was talking."""

    record: CallRecord
    interrupting: bool


@dataclass(frozen=True)
class DtmfReceived:
    record: CallRecord
    dtmf: DtmfRecord


@dataclass(frozen=True)
class ToolExecuted:
    record: CallRecord
    tool: ToolCallRecord


@dataclass(frozen=True)
class EngineError:
    record: CallRecord
    role: str
    message: str
    detail: dict[str, Any]


@dataclass(frozen=True)
class CallEnded:
    record: CallRecord


@dataclass(frozen=True)
class RecordingReady:
    """The call's recording is finalised: `info` is `metadata.recording` (format, duration_s,
    bytes, sha256...)."""

    record: CallRecord
    info: dict[str, Any]


CallEvent = (
    CallStarted | TurnCompleted | CallerSpeaking | DtmfReceived | ToolExecuted | EngineError | CallEnded
    | RecordingReady
)
