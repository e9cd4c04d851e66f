"""Webhook event payloads: one pydantic model per event type, built from call and agent events.

Every request body is ``{"type": ..., "timestamp": <ISO 8601 UTC>, "data": {...}}`` (the
Standard Webhooks convention). Times inside ``data`` are unix seconds, as in the control
API. The models are the contract: the OpenAPI document publishes them (the ``payload`` of
a delivery, ``GET /api/v1/webhooks/event-types``), and field names only ever get added.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from voxd.call.conversation import ConversationClosed, TextEvent
from voxd.call.events import (
    CallEnded,
    CallEvent,
    CallStarted,
    DtmfReceived,
    EngineError,
    RecordingReady,
    ToolExecuted,
    TurnCompleted,
)
from voxd.core.calllog import CallRecord, Turn
from voxd.core.endreason import EndedBy, EndReason
from voxd.core.redact import default_redactor
from voxd.core.signing import new_message_id
from voxd.store.repos import Message

EVENT_TYPES: dict[str, str] = {
    "call.started": "A call was set up and its session started.",
    "call.answered": "The call was answered (media flows, the greeting starts).",
    "call.ended": "The call ended: duration, end reason and who hung up.",
    "call.failed": "The call ended without being answered (busy, no answer, rejected, error).",
    "call.transferred": "The call was handed to another destination.",
    "call.analyzed": "The post-call analysis is done: summary, outcome, extracted fields, sentiment, quality (MOS), "
                     "cost.",
    "conversation.updated": "A turn completed, in a call or a text conversation: its text, whether it was "
                            "interrupted, its latencies.",
    "conversation.ended": "The full transcript, once the call or text conversation has ended.",
    "dtmf.received": "The caller pressed a key.",
    "function.executed": "A function ran during a call: name, arguments, result or error, duration.",
    "agent.deployed": "A new agent was loaded.",
    "agent.updated": "An agent's configuration changed (new version).",
    "error.occurred": "An engine (STT, LLM, TTS) failed during a call.",
    "recording.ready": "The call's recording is finalised: format, duration and SHA-256 checksum.",
    "webhook.test": "Sent by POST /api/v1/webhooks/{webhook_id}/test.",
}
# what an endpoint can subscribe to (`events:`): every type but the test send, which goes
# only to the endpoint it was asked for
SUBSCRIBABLE: tuple[str, ...] = tuple(t for t in EVENT_TYPES if t != "webhook.test")


VARIABLES_DOC = "The call's per-call variables (declared defaults and the values it brought)."


class CallInfo(BaseModel):
    id: str = Field(examples=["call_3f2a9c0d1e4b5a6c7d8e"])
    agent: str = Field(examples=["front-desk"])
    agent_version: str
    transport: str = Field(examples=["sip"], description="sip, websocket, twilio, webrtc")
    direction: Literal["inbound", "outbound"]
    from_uri: str
    to_uri: str
    started_at: float
    answered_at: float | None
    metadata: dict[str, Any]
    variables: dict[str, str] = Field(default_factory=dict, description=VARIABLES_DOC)


class CallEndedInfo(CallInfo):
    ended_at: float | None
    duration_s: float = Field(description="From answer (or start, if never answered) to end.")
    end_reason: EndReason | None = Field(examples=["caller_hangup"])
    ended_by: EndedBy | None = Field(description="Who hung up.")
    interruptions: int
    turn_count: int


class Latency(BaseModel):
    endpoint_ms: float | None = None
    transcript_ms: float | None = None
    first_token_ms: float | None = None
    first_audio_ms: float | None = None


class CallAnalyzedInfo(BaseModel):
    call_id: str
    agent: str
    summary: str | None
    outcome: str | None = Field(examples=["booked"])
    extracted: dict[str, Any] = Field(description="The fields of the agent's analysis.schema.")
    sentiment: float | None = Field(description="The caller's overall sentiment, -1..1.")
    mos: float | None = Field(description="E-model MOS of the audio path (RTP calls), 1..4.5.")
    validation_error: str | None = Field(description="Why `extracted` does not match the schema, if it does not.")
    analysis: dict[str, Any] = Field(description="The whole analysis, as GET /api/v1/calls/{call_id} shows it.")
    variables: dict[str, str] = Field(default_factory=dict, description=VARIABLES_DOC)


class TurnInfo(BaseModel):
    index: int
    speaker: Literal["caller", "bot"]
    text: str
    source: str = Field(examples=["speech"])
    interrupted: bool
    heard_text: str | None = Field(description="For an interrupted bot turn: what the caller heard.")
    started_at: float
    ended_at: float | None
    latency: Latency | None = Field(description="Milliseconds per stage of a bot reply.")
    barge_in_ms: float | None


CHANNEL_DOC = "call, or text for a conversation started with POST /api/v1/conversations."


class _OfACall(BaseModel):
    variables: dict[str, str] = Field(default_factory=dict, description=VARIABLES_DOC)


class ConversationUpdated(_OfACall):
    call_id: str | None = Field(description="The call; null for a text conversation.")
    conversation_id: str = Field(description="The call's id, or the text conversation's (conv_...).")
    channel: Literal["call", "text"] = Field("call", description=CHANNEL_DOC)
    agent: str
    turn: TurnInfo


class ConversationEnded(_OfACall):
    call_id: str | None = Field(description="The call; null for a text conversation.")
    conversation_id: str = Field(description="The call's id, or the text conversation's (conv_...).")
    channel: Literal["call", "text"] = Field("call", description=CHANNEL_DOC)
    end_reason: str | None = None
    agent: str
    transcript: list[TurnInfo]
    dtmf: str = Field(description="Every digit the caller pressed, in order.", examples=["12#"])


class DtmfInfo(_OfACall):
    call_id: str
    agent: str
    digit: str = Field(examples=["5"])
    source: str = Field(examples=["rfc4733"])
    at: float


class FunctionExecutedInfo(_OfACall):
    call_id: str = Field(description="The call, or the text conversation (conv_...) the function ran in.")
    agent: str
    name: str = Field(examples=["lookup_order"])
    arguments: dict[str, Any]
    result: Any = None
    error: str | None
    started_at: float
    duration_ms: float


class AgentInfo(BaseModel):
    agent: str = Field(examples=["front-desk"])
    version: str


class ErrorInfo(_OfACall):
    call_id: str
    agent: str
    role: str = Field(examples=["llm"], description="stt, llm or tts")
    message: str
    detail: dict[str, Any]


class RecordingInfo(_OfACall):
    call_id: str
    agent: str
    format: Literal["wav", "opus"]
    channels: Literal["stereo", "mono"]
    content_type: str = Field(examples=["audio/wav"])
    duration_s: float
    bytes: int
    sha256: str = Field(description="Hex SHA-256 of the file GET /api/v1/calls/{call_id}/recording serves.")
    url: str = Field(examples=["/api/v1/calls/call_3f2a9c0d1e4b5a6c7d8e/recording"])
    expires_at: float | None = Field(None, description="When retention deletes it (unix seconds); null: kept.")


class TestInfo(BaseModel):
    webhook_id: str
    message: str = "This is a test event from voxd."


class _Envelope(BaseModel):
    timestamp: str = Field(description="When voxd created the event (ISO 8601, UTC).",
                           examples=["2026-11-27T05:01:02.345Z"])


class CallStartedEvent(_Envelope):
    """``call.started``"""

    type: Literal["call.started"]
    data: CallInfo


class CallAnsweredEvent(_Envelope):
    """``call.answered``"""

    type: Literal["call.answered"]
    data: CallInfo


class CallEndedEvent(_Envelope):
    """``call.ended``"""

    type: Literal["call.ended"]
    data: CallEndedInfo


class CallFailedEvent(_Envelope):
    """``call.failed``"""

    type: Literal["call.failed"]
    data: CallEndedInfo


class CallTransferredEvent(_Envelope):
    """``call.transferred``"""

    type: Literal["call.transferred"]
    data: CallEndedInfo


class CallAnalyzedEvent(_Envelope):
    """``call.analyzed``"""

    type: Literal["call.analyzed"]
    data: CallAnalyzedInfo


class ConversationUpdatedEvent(_Envelope):
    """``conversation.updated``"""

    type: Literal["conversation.updated"]
    data: ConversationUpdated


class ConversationEndedEvent(_Envelope):
    """``conversation.ended``"""

    type: Literal["conversation.ended"]
    data: ConversationEnded


class DtmfReceivedEvent(_Envelope):
    """``dtmf.received``"""

    type: Literal["dtmf.received"]
    data: DtmfInfo


class FunctionExecutedEvent(_Envelope):
    """``function.executed``"""

    type: Literal["function.executed"]
    data: FunctionExecutedInfo


class AgentDeployedEvent(_Envelope):
    """``agent.deployed``"""

    type: Literal["agent.deployed"]
    data: AgentInfo


class AgentUpdatedEvent(_Envelope):
    """``agent.updated``"""

    type: Literal["agent.updated"]
    data: AgentInfo


class ErrorOccurredEvent(_Envelope):
    """``error.occurred``"""

    type: Literal["error.occurred"]
    data: ErrorInfo


class RecordingReadyEvent(_Envelope):
    """``recording.ready``"""

    type: Literal["recording.ready"]
    data: RecordingInfo


class WebhookTestEvent(_Envelope):
    """``webhook.test``"""

    type: Literal["webhook.test"]
    data: TestInfo


EVENT_MODELS: dict[str, type[_Envelope]] = {
    "call.started": CallStartedEvent,
    "call.answered": CallAnsweredEvent,
    "call.ended": CallEndedEvent,
    "call.failed": CallFailedEvent,
    "call.transferred": CallTransferredEvent,
    "call.analyzed": CallAnalyzedEvent,
    "conversation.updated": ConversationUpdatedEvent,
    "conversation.ended": ConversationEndedEvent,
    "dtmf.received": DtmfReceivedEvent,
    "function.executed": FunctionExecutedEvent,
    "agent.deployed": AgentDeployedEvent,
    "agent.updated": AgentUpdatedEvent,
    "error.occurred": ErrorOccurredEvent,
    "recording.ready": RecordingReadyEvent,
    "webhook.test": WebhookTestEvent,
}
WebhookEvent = Annotated[
    CallStartedEvent | CallAnsweredEvent | CallEndedEvent | CallFailedEvent
    | CallTransferredEvent | CallAnalyzedEvent | ConversationUpdatedEvent | ConversationEndedEvent | DtmfReceivedEvent
    | FunctionExecutedEvent | AgentDeployedEvent | AgentUpdatedEvent | ErrorOccurredEvent
    | RecordingReadyEvent | WebhookTestEvent,
    Field(discriminator="type"),
]


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def message(event_type: str, data: BaseModel, *, agent: str | None = None, call_id: str | None = None,
            at: float | None = None) -> Message:
    """The outbox row for one event; its id is the ``webhook-id`` of every attempt."""
    now = time.time() if at is None else at
    body = EVENT_MODELS[event_type].model_validate({"type": event_type, "timestamp": iso(now), "data": data})
    return Message(id=new_message_id(), type=event_type, payload=body.model_dump_json(),
                   agent=agent, call_id=call_id, created_at=now)


# ----------------------------------------------------------------------- builders
def _call(r: CallRecord) -> dict[str, Any]:
    return {"id": r.id, "agent": r.agent, "agent_version": r.agent_version, "transport": r.transport,
            "direction": r.direction, "from_uri": r.from_uri, "to_uri": r.to_uri,
            "started_at": r.started_at, "answered_at": r.answered_at, "metadata": dict(r.metadata),
            "variables": dict(r.variables)}


def _ended(r: CallRecord) -> CallEndedInfo:
    end = r.ended_at if r.ended_at is not None else time.time()
    return CallEndedInfo(**_call(r), ended_at=r.ended_at, duration_s=round(end - (r.answered_at or r.started_at), 3),
                         end_reason=r.end_reason, ended_by=r.ended_by, interruptions=r.interruptions,
                         turn_count=len(r.turns))


def _turn(t: Turn) -> TurnInfo:
    lat = None if t.latency is None else Latency(**vars(t.latency))
    return TurnInfo(index=t.index, speaker=t.speaker, text=t.text, source=t.source, interrupted=t.interrupted,
                    heard_text=t.heard_text, started_at=t.started_at, ended_at=t.ended_at, latency=lat,
                    barge_in_ms=t.barge_in_ms)


def from_call_event(event: CallEvent) -> list[Message]:
    """The webhook messages one call event produces (none for live-UI-only events)."""
    r = event.record
    v = dict(r.variables)

    def msg(kind: str, data: BaseModel) -> Message:
        return message(kind, data, agent=r.agent, call_id=r.id)

    if isinstance(event, CallStarted):
        out = [msg("call.started", CallInfo(**_call(r)))]
        if r.answered_at is not None:
            out.append(msg("call.answered", CallInfo(**_call(r))))
        return out
    if isinstance(event, TurnCompleted):
        return [msg("conversation.updated", ConversationUpdated(call_id=r.id, conversation_id=r.id, agent=r.agent,
                                                                    turn=_turn(event.turn), variables=v))]
    if isinstance(event, DtmfReceived):
        d = event.dtmf
        return [msg("dtmf.received", DtmfInfo(call_id=r.id, agent=r.agent, digit=d.digit,
                                                  source=d.source, at=d.at, variables=v))]
    if isinstance(event, ToolExecuted):
        t = event.tool  # redacted as in the execution log: no API keys or passwords leave
        result = default_redactor(t.result if _jsonable(t.result) else str(t.result))
        return [msg("function.executed", FunctionExecutedInfo(
            call_id=r.id, agent=r.agent, name=t.name, arguments=default_redactor(dict(t.arguments)), result=result,
            error=default_redactor.text(t.error) if t.error else None, started_at=t.started_at,
            duration_ms=t.duration_ms, variables=v))]
    if isinstance(event, EngineError):
        return [msg("error.occurred", ErrorInfo(call_id=r.id, agent=r.agent, role=event.role,
                                                    message=event.message, detail=_plain(event.detail),
                                                    variables=v))]
    if isinstance(event, RecordingReady):
        i = event.info
        return [msg("recording.ready", RecordingInfo(
            call_id=r.id, agent=r.agent, format=i["format"], channels=i["channels"], content_type=i["content_type"],
            duration_s=i["duration_s"], bytes=i["bytes"], sha256=i["sha256"],
            url=f"/api/v1/calls/{r.id}/recording", expires_at=i.get("expires_at"), variables=v))]
    if isinstance(event, CallEnded):
        ended = _ended(r)
        out = []
        if r.end_reason == "transferred":
            out.append(msg("call.transferred", ended))
        if r.answered_at is None:
            out.append(msg("call.failed", ended))
        out.append(msg("call.ended", ended))
        if r.answered_at is not None:
            out.append(msg("conversation.ended", ConversationEnded(
                call_id=r.id, conversation_id=r.id, end_reason=r.end_reason, agent=r.agent,
                transcript=[_turn(t) for t in r.turns],
                dtmf="".join(d.digit for d in r.dtmf), variables=v)))
        return out
    return []


def from_text_event(event: TextEvent) -> list[Message]:
    """The webhook messages of a text conversation's event: conversation.updated per turn,
    function.executed per function, error.occurred, conversation.ended (no call events)."""
    r = event.record

    def msg(kind: str, data: BaseModel) -> Message:
        return message(kind, data, agent=r.agent, call_id=r.id)

    if isinstance(event, TurnCompleted):
        return [msg("conversation.updated", ConversationUpdated(
            call_id=None, conversation_id=r.id, channel="text", agent=r.agent, turn=_turn(event.turn),
            variables=dict(r.variables)))]
    if isinstance(event, ConversationClosed):
        return [msg("conversation.ended", ConversationEnded(
            call_id=None, conversation_id=r.id, channel="text", end_reason=r.end_reason, agent=r.agent,
            transcript=[_turn(t) for t in r.turns], dtmf="", variables=dict(r.variables)))]
    if isinstance(event, ToolExecuted | EngineError):
        return from_call_event(event)
    return []


def analyzed_message(call_id: str, agent: str, analysis: dict[str, Any],
                     variables: dict[str, str] | None = None) -> Message:
    """``call.analyzed`` for a call's stored analysis."""
    s = analysis.get("sentiment") or {}
    q = analysis.get("quality") or {}
    return message("call.analyzed", CallAnalyzedInfo(
        call_id=call_id, agent=agent, summary=analysis.get("summary"), outcome=analysis.get("outcome"),
        extracted=dict(analysis.get("extracted") or {}), sentiment=s.get("overall"), mos=q.get("mos"),
        validation_error=analysis.get("validation_error"), analysis=analysis, variables=dict(variables or {})),
        agent=agent, call_id=call_id)


def agent_message(event_type: Literal["agent.deployed", "agent.updated"], name: str, version: str) -> Message:
    return message(event_type, AgentInfo(agent=name, version=version), agent=name)


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    return {str(k): (v if _jsonable(v) else str(v)) for k, v in detail.items()}


def examples() -> dict[str, dict[str, Any]]:
    """One example payload per event type (for the docs endpoint and the tests)."""
    from voxd.core.calllog import DtmfRecord, ToolCallRecord, TurnLatency

    rec = CallRecord(id="call_3f2a9c0d1e4b5a6c7d8e", agent="front-desk", agent_version="7c1e", transport="sip",
                     from_uri="sip:+15550100@pbx.example.com", to_uri="sip:support@voxd.example.com",
                     started_at=1_790_000_000.0, answered_at=1_790_000_000.2, variables={"name": "Ada"})
    turn = Turn(index=1, speaker="bot", text="It's ten past five.", started_at=1_790_000_004.1,
                ended_at=1_790_000_005.6, source="reply",
                latency=TurnLatency(endpoint_ms=310.0, transcript_ms=42.0, first_token_ms=380.0, first_audio_ms=520.0))
    rec.turns = [Turn(index=0, speaker="caller", text="What time is it?", started_at=1_790_000_002.0,
                      ended_at=1_790_000_003.4), turn]
    rec.dtmf = [DtmfRecord(digit="5", at=1_790_000_006.0)]
    tool = ToolCallRecord(name="get_current_time", arguments={}, result={"spoken": "ten past five"},
                          started_at=1_790_000_003.8, duration_ms=2.1, call_id=rec.id)
    live = [*from_call_event(CallStarted(rec)), *from_call_event(TurnCompleted(rec, turn)),
            *from_call_event(DtmfReceived(rec, rec.dtmf[0])), *from_call_event(ToolExecuted(rec, tool)),
            *from_call_event(EngineError(rec, "llm", "upstream timed out", {"provider": "openai"}))]
    rec.ended_at, rec.end_reason, rec.ended_by = 1_790_000_012.0, "caller_hangup", "caller"
    live += from_call_event(CallEnded(rec))
    live += from_call_event(RecordingReady(rec, {
        "format": "wav", "channels": "stereo", "content_type": "audio/wav", "duration_s": 11.78, "bytes": 754_004,
        "sha256": "9f2c" * 16, "expires_at": 1_792_592_012.0}))
    failed = CallRecord(id="call_9b8a7c6d5e4f3a2b1c0d", agent="front-desk", agent_version="7c1e", transport="sip",
                        direction="outbound", to_uri="sip:+15550199@pbx.example.com", started_at=1_790_000_100.0,
                        ended_at=1_790_000_130.0, end_reason="no_answer", ended_by="system")
    moved = CallRecord(id="call_1a2b3c4d5e6f7a8b9c0d", agent="front-desk", agent_version="7c1e", transport="sip",
                       started_at=1_790_000_200.0, answered_at=1_790_000_200.1, ended_at=1_790_000_230.0,
                       end_reason="transferred", ended_by="agent")
    live += from_call_event(CallEnded(failed)) + from_call_event(CallEnded(moved))
    live.append(analyzed_message(rec.id, rec.agent, {
        "summary": "The caller asked the time.", "outcome": "answered", "extracted": {}, "validation_error": None,
        "sentiment": {"method": "vader", "overall": 0.0}, "quality": {"mos": 4.4, "r_factor": 92.7}}))
    live += [agent_message("agent.deployed", "front-desk", "7c1e"), agent_message("agent.updated", "front-desk", "8d2f"),
             message("webhook.test", TestInfo(webhook_id="wh_0123456789abcdef"))]
    out: dict[str, dict[str, Any]] = {}
    for m in live:
        out.setdefault(m.type, EVENT_MODELS[m.type].model_validate_json(m.payload).model_dump(mode="json"))
    return out
