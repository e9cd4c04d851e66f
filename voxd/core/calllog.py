"""What a call leaves behind: the call record, its turns, tool calls and digits.

Plain dataclasses filled in by the session as the call runs; the store persists
them and the control API and webhooks expose them.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from voxd.core.endreason import EndedBy, EndReason


def new_call_id() -> str:
    return "call_" + uuid.uuid4().hex[:20]


@dataclass
class ToolCallRecord:
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None = None
    started_at: float = 0.0
    duration_ms: float = 0.0
    call_id: str = ""


@dataclass
class TurnLatency:
    """Milliseconds for each stage of a reply.

    `endpoint_ms` runs from the end of the caller's speech to the turn-end decision
    (silence + turn model); the others run from that decision to the transcript,
    the LLM's first token and the first bot audio ready to play.
    """

    endpoint_ms: float | None = None
    transcript_ms: float | None = None
    first_token_ms: float | None = None
    first_audio_ms: float | None = None


@dataclass
class Turn:
    index: int
    speaker: Literal["caller", "bot"]
    text: str
    started_at: float
    ended_at: float | None = None
    interrupted: bool = False
    heard_text: str | None = None  # for interrupted bot turns: what the caller actually heard
    source: Literal["speech", "dtmf", "greeting", "menu", "reply", "filler"] = "speech"
    latency: TurnLatency | None = None
    tool_calls: list[ToolCallRecord] = field(default_factory=list)
    barge_in_ms: float | None = None  # caller speech onset -> bot audio stopped


@dataclass
class DtmfRecord:
    digit: str
    at: float
    source: str = "rfc4733"


@dataclass
class CallRecord:
    id: str
    agent: str
    agent_version: str
    transport: str
    from_uri: str = ""
    to_uri: str = ""
    direction: Literal["inbound", "outbound"] = "inbound"
    started_at: float = field(default_factory=time.time)
    answered_at: float | None = None
    ended_at: float | None = None
    end_reason: EndReason | None = None
    ended_by: EndedBy | None = None
    turns: list[Turn] = field(default_factory=list)
    dtmf: list[DtmfRecord] = field(default_factory=list)
    interruptions: int = 0
    metadata: dict[str, Any] = field(default_factory=dict)
    variables: dict[str, str] = field(default_factory=dict)  # the call's per-call variables, defaults filled in
    org: str = "default"  # the organisation whose agent took the call: its store, API and webhooks

    @property
    def status(self) -> str:
        if self.ended_at is not None:
            return "ended"
        return "active" if self.answered_at is not None else "ringing"

    @property
    def tool_calls(self) -> list[ToolCallRecord]:
        return [tc for t in self.turns for tc in t.tool_calls]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("org")  # known to whoever reads it: records are served per organisation
        d["status"] = self.status
        return d
