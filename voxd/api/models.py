"""Pydantic models for every request and response; the OpenAPI document is built from these.

Request models forbid unknown fields. Response models describe exactly what handlers
send (the pipeline validates each response against its model before sending).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import SkipJsonSchema

from voxd.agents.variables import MAX_VALUE_CHARS, MAX_VARIABLES, VARIABLE_NAME

SCOPES: tuple[str, ...] = (
    "agents:read", "agents:write", "calls:read", "calls:write", "conversations:read",
    "conversations:write", "functions:read", "functions:write", "functions:execute",
    "webhooks:read", "webhooks:write", "recordings:read", "recordings:write", "keys:admin", "audit:read",
    "usage:read", "users:admin", "admin",
)
Scope = Literal[
    "agents:read", "agents:write", "calls:read", "calls:write", "conversations:read",
    "conversations:write", "functions:read", "functions:write", "functions:execute",
    "webhooks:read", "webhooks:write", "recordings:read", "recordings:write", "keys:admin", "audit:read",
    "usage:read", "users:admin", "admin",
]
NAME_RE = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
MAX_QUOTA = 10**12
FUNCTION_NAME_RE = r"[a-z][a-z0-9_]{0,63}"
CALL_ID_RE = r"call_[A-Za-z0-9_-]{1,64}"
KEY_ID_RE = r"key_[0-9a-f]{16}"
NAME_PATTERN = f"^{NAME_RE}$"
FUNCTION_NAME_PATTERN = f"^{FUNCTION_NAME_RE}$"


class Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class FieldError(BaseModel):
    field: str = Field(description="Dotted path of the offending field, e.g. 'scopes[1]'.")
    message: str
    line: int | None = Field(None, description="Line in the YAML text, for agent errors.")


class Problem(BaseModel):
    """RFC 9457 problem details."""

    type: str = Field(examples=["urn:voxd:problem:insufficient-scope"])
    title: str
    status: int
    detail: str = Field(examples=["this operation needs scope 'agents:write'"])
    instance: str | None = None
    errors: list[FieldError] | None = None
    required_scope: str | None = None


class Health(BaseModel):
    status: Literal["ok"] = "ok"


# -- agents -------------------------------------------------------------------------------

class AgentSummary(BaseModel):
    name: str
    version: str
    description: str
    path: str
    updated_at: float


class AgentList(BaseModel):
    agents: list[AgentSummary]


class AgentDetail(AgentSummary):
    yaml: str = Field(description="The YAML file as stored; the source of truth.")
    config: dict[str, Any] = Field(description="The parsed, validated configuration.")


class AgentWrite(Request):
    yaml: str = Field(
        min_length=1, description="The whole agent file. Its `name` must match the URL on update.",
        examples=["name: front-desk\ngreeting: Hello, how can I help?\n"],
    )


class AgentValidation(BaseModel):
    valid: bool
    errors: list[FieldError]


class AgentChange(BaseModel):
    agent: str
    version: str
    action: Literal["create", "update", "delete"]
    actor: str = Field(description="Id of the API key that made the change.")
    at: float


class AgentHistory(BaseModel):
    changes: list[AgentChange]


# -- functions ----------------------------------------------------------------------------

class HttpSpec(Request):
    method: Literal["GET", "POST", "PUT", "PATCH", "DELETE"] = "POST"
    url: str = Field(pattern=r"^https?://[^\s]+$", max_length=2048,
                     examples=["https://crm.example.com/lookup"])
    headers: dict[str, str] = Field(default_factory=dict, description="Values may reference ${ENV_VARS} allowed by tools.function_env.")
    timeout_s: float = Field(10.0, gt=0, le=60)
    body: Any = Field(None, description="Body template; {argument} placeholders are filled from the call's arguments.")
    secret_env: str | None = Field(None, description="Environment variable holding this function's own signing secret.")


class FunctionInfo(BaseModel):
    name: str
    description: str
    parameters: dict[str, Any] = Field(description="JSON Schema of the arguments.")
    builtin: bool
    http: dict[str, Any] | None = Field(None, description="For custom functions: the HTTP spec.")
    created_by: str | None = None
    created_at: float | None = None
    updated_at: float | None = None


class FunctionList(BaseModel):
    functions: list[FunctionInfo]


class FunctionUpdate(Request):
    description: str = Field(min_length=1, max_length=1024)
    parameters: dict[str, Any] = Field(
        description="JSON Schema (an object schema) of the arguments.",
        json_schema_extra={"required": ["type"], "properties": {"type": {"const": "object"}}},
        examples=[{"type": "object", "properties": {"order": {"type": "string"}}}],
    )
    http: HttpSpec


class FunctionCreate(FunctionUpdate):
    name: str = Field(pattern=FUNCTION_NAME_PATTERN, examples=["lookup_order"])


class ExecuteRequest(Request):
    arguments: dict[str, Any] = Field(default_factory=dict)


class Execution(BaseModel):
    id: int | None
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None
    duration_ms: float
    actor: str
    at: float


class ExecutionList(BaseModel):
    executions: list[Execution]


# -- calls --------------------------------------------------------------------------------

CallStatus = Literal["ringing", "active", "ended"]


class CallsQuery(Request):
    agent: str | None = Field(None, max_length=64)
    status: CallStatus | None = None
    since: float | None = Field(None, allow_inf_nan=False, description="Started at or after (unix s).")
    until: float | None = Field(None, allow_inf_nan=False, description="Started before (unix s).")
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the previous page.")
    outcome: str | None = Field(None, max_length=64, pattern=r"^[a-z][a-z0-9_]*$",
                                description="Only calls whose analysis has this outcome.", examples=["booked"])
    sentiment_lt: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False,
                                       description="Only calls whose caller's overall sentiment is below this.")
    sentiment_gt: float | None = Field(None, ge=-1, le=1, allow_inf_nan=False,
                                       description="Only calls whose caller's overall sentiment is above this.")
    mos_lt: float | None = Field(None, ge=1, le=5, allow_inf_nan=False,
                                 description="Only calls whose E-model MOS is below this.")


class CallBase(BaseModel):
    id: str
    agent: str
    agent_version: str
    transport: str
    from_uri: str
    to_uri: str
    direction: Literal["inbound", "outbound"]
    status: CallStatus
    started_at: float
    answered_at: float | None
    ended_at: float | None
    end_reason: str | None
    ended_by: Literal["caller", "agent", "system"] | None
    interruptions: int
    metadata: dict[str, Any]
    variables: dict[str, str] = Field(default_factory=dict, description="The call's variables, defaults filled in.")
    erased_at: float | None = Field(None, description="When the call was erased (right to erasure or transcript "
                                    "retention): only its tombstone is left, with no transcript or details.")


class CallSummary(CallBase):
    turn_count: int
    outcome: str | None = Field(None, description="From the post-call analysis (null until analysed).")
    sentiment: float | None = Field(None, description="The caller's overall sentiment, -1..1 (analysis).")
    mos: float | None = Field(None, description="E-model MOS of the call's audio path (analysis; RTP calls).")


class CallPage(BaseModel):
    calls: list[CallSummary]
    next_cursor: str | None


class ToolCallOut(BaseModel):
    name: str
    arguments: dict[str, Any]
    result: Any = None
    error: str | None
    started_at: float
    duration_ms: float


class TurnOut(BaseModel):
    index: int
    speaker: Literal["caller", "bot"]
    text: str
    started_at: float
    ended_at: float | None
    interrupted: bool
    heard_text: str | None = Field(description="For interrupted bot turns: what was heard.")
    source: str
    latency: dict[str, float | None] | None = Field(description="Milliseconds per stage.")
    tool_calls: list[ToolCallOut]
    barge_in_ms: float | None


class DtmfOut(BaseModel):
    digit: str
    at: float
    source: str


class CallAnalysis(BaseModel):
    """The post-call analysis of a call (``call.analyzed`` carries the same object)."""

    model_config = ConfigDict(extra="allow")
    summary: str | None = Field(None, description="A few sentences (the model's, or the dialog's template).")
    outcome: str | None = Field(None, examples=["booked"], description="One of the agent's analysis.outcomes.")
    extracted: dict[str, Any] = Field(default_factory=dict, description="The fields of the agent's analysis.schema.")
    validation_error: str | None = Field(None, description="Why `extracted` does not match the schema, if it does not.")
    method: str | None = Field(None, examples=["llm"], description="llm or dialog: who wrote summary/outcome/extracted.")
    sentiment: dict[str, Any] = Field(default_factory=dict,
                                      description="method, overall (-1..1), label, and per caller turn.")
    intents: dict[str, Any] = Field(default_factory=dict, description="method, and the intent recognised per turn.")
    quality: dict[str, Any] = Field(default_factory=dict, description=(
        "r_factor and mos (ITU-T G.107 E-model from RTP loss, jitter and RTCP round trip; null without RTP), "
        "codec, talk-time ratios, overlap, silence, interruptions, reply_latency_ms percentiles."))
    cost: dict[str, Any] = Field(default_factory=dict, description="total_usd, by_provider, by_role, units.")


class CallDetail(CallBase):
    turns: list[TurnOut]
    dtmf: list[DtmfOut]
    analysis: CallAnalysis | None = Field(None, description="The post-call analysis; null until it has run.")


class AnalysisQueued(BaseModel):
    call_id: str
    status: Literal["pending"]


class ActiveCalls(BaseModel):
    calls: list[CallDetail]


class RecordingOverride(Request):
    model_config = ConfigDict(extra="forbid", strict=True)  # 0 is not false here

    enabled: bool | None = None
    channels: Literal["stereo", "mono"] | None = None
    format: Literal["wav", "opus"] | None = None
    consent_prompt: str | None = Field(None, max_length=1000)
    pause_on_secure_input: bool | None = None
    retention_days: float | None = Field(None, gt=0)

    def given(self) -> dict[str, Any]:
        return self.model_dump(exclude_none=True)  # null: the agent's own setting


VariableName = Annotated[str, Field(pattern=VARIABLE_NAME)]
CallVariables = Annotated[dict[VariableName, Annotated[str, Field(max_length=MAX_VALUE_CHARS)]],
                          Field(max_length=MAX_VARIABLES, json_schema_extra={"additionalProperties": False})]


class DialRequest(Request):
    agent: str = Field(pattern=NAME_PATTERN, examples=["front-desk"])
    to: str = Field(min_length=1, max_length=256, examples=["+15551234567", "sip:+15551234567@pbx.example.com"],
                    description="A SIP URI, or a phone number dialled through `trunk`.")
    from_: str | None = Field(None, alias="from", min_length=1, max_length=256)
    trunk: str | None = Field(
        None, pattern=NAME_PATTERN, examples=["carrier"],
        description="A trunk with outbound settings (sip.trunks[].outbound); needed for a phone number "
        "unless exactly one trunk has them.")
    recording: RecordingOverride | None = Field(
        None, description="This call's recording settings over the agent's `recording:` (only the fields given).")
    variables: CallVariables = Field(
        default_factory=dict, examples=[{"name": "Ada", "order_id": "A-1042"}],
        description="Per-call variables: fill the agent's {placeholders} (greeting, prompt, dialog replies, "
        "function templates); names the agent declares but this omits take their defaults. Kept on the "
        "call record and in every webhook of the call.")


class DialResult(BaseModel):
    id: str
    status: Literal["dialing"] = "dialing"


class EndResult(BaseModel):
    id: str
    ending: bool = True


# -- API keys -----------------------------------------------------------------------------

class KeyCreate(Request):
    name: str = Field(min_length=1, max_length=100, examples=["crm-sync"])
    scopes: list[Scope] = Field(min_length=1, max_length=len(SCOPES), examples=[["calls:read"]])
    expires_at: float | None = Field(None, allow_inf_nan=False, description="Unix seconds.")
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    quota_per_day: int | None = Field(None, ge=1, le=MAX_QUOTA)
    quota_per_month: int | None = Field(None, ge=1, le=MAX_QUOTA)


class KeyUpdate(Request):
    """Fields left out stay as they are; scopes may only narrow."""

    name: Annotated[str, Field(min_length=1, max_length=100)] | SkipJsonSchema[None] = None
    scopes: (
        Annotated[list[Scope], Field(min_length=1, max_length=len(SCOPES))]
        | SkipJsonSchema[None]
    ) = None
    expires_at: float | None = Field(None, allow_inf_nan=False)
    rate_limit_per_minute: int | None = Field(None, ge=1, le=1_000_000)
    quota_per_day: int | None = Field(None, ge=1, le=MAX_QUOTA)
    quota_per_month: int | None = Field(None, ge=1, le=MAX_QUOTA)


class KeyOut(BaseModel):
    id: str
    name: str
    prefix: str = Field(description="First characters of the key, for recognising it.")
    scopes: list[str]
    status: Literal["active", "expired", "revoked"]
    created_by: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    last_used_at: float | None
    rate_limit_per_minute: int | None
    quota_per_day: int | None
    quota_per_month: int | None
    org: str = Field("default", description="The organisation the key belongs to.")


class KeyCreated(KeyOut):
    key: str = Field(description="The full key. Shown only in this response; store it now.",
                     examples=["vx_live_3kTq0m...(46 characters)"])


class KeyList(BaseModel):
    keys: list[KeyOut]


class UsageQuery(Request):
    since: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, inclusive.")
    until: str | None = Field(None, pattern=r"^\d{4}-\d{2}-\d{2}$", description="UTC day, inclusive.")


class UsageRow(BaseModel):
    day: str
    endpoint: str
    count: int


class Usage(BaseModel):
    key_id: str
    today: int
    this_month: int
    quota_per_day: int | None
    quota_per_month: int | None
    days: list[UsageRow]
