"""Request and response models of ``/api/v1/conversations`` (text conversations)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from voxd.api.models import NAME_PATTERN, CallVariables, Request, ToolCallOut

CONVERSATION_ID_RE = r"conv_[A-Za-z0-9_-]{1,64}"
ConversationStatus = Literal["active", "ended"]
MAX_TEXT = 4000


class ConversationStart(Request):
    agent: str = Field(pattern=NAME_PATTERN, examples=["receptionist"])
    metadata: dict[str, str | int | float | bool | None] = Field(
        default_factory=dict, max_length=64,
        description="Variables carried with the conversation, as a call's metadata (e.g. a customer id).",
        examples=[{"customer": "c_1042"}])
    variables: CallVariables = Field(
        default_factory=dict, examples=[{"name": "Ada"}],
        description="Per-call variables: fill the agent's {placeholders} as a call's do; undeclared ones are kept.")


class MessageSend(Request):
    text: str = Field(min_length=1, max_length=MAX_TEXT, examples=["What time is it?"])


class ConversationsQuery(Request):
    agent: str | None = Field(None, max_length=64)
    status: ConversationStatus | None = None
    limit: int = Field(50, ge=1, le=500)
    cursor: str | None = Field(None, max_length=512, description="next_cursor of the previous page.")


class ConversationTurn(BaseModel):
    index: int
    speaker: Literal["caller", "bot"] = Field(description="caller: the user's message; bot: the agent's.")
    text: str
    source: str = Field(examples=["reply"], description="speech (the user's text), greeting or reply.")
    started_at: float
    ended_at: float | None
    latency: dict[str, float | None] | None = Field(description="Milliseconds to the model's first token.")
    tool_calls: list[ToolCallOut]


class ConversationBase(BaseModel):
    id: str = Field(examples=["conv_3f2a9c0d1e4b5a6c7d8e"])
    agent: str
    agent_version: str
    channel: str = Field(examples=["text"])
    status: ConversationStatus
    started_at: float
    ended_at: float | None
    end_reason: str | None = Field(examples=["api_end"])
    ended_by: Literal["caller", "agent", "system"] | None
    metadata: dict[str, Any]
    variables: dict[str, str] = Field(default_factory=dict, description="The conversation's variables.")


class ConversationSummary(ConversationBase):
    turn_count: int


class ConversationPage(BaseModel):
    conversations: list[ConversationSummary]
    next_cursor: str | None


class ConversationDetail(ConversationBase):
    turns: list[ConversationTurn]


class MessageReply(BaseModel):
    conversation_id: str
    reply: str = Field(description="The agent's answer.")
    turn: ConversationTurn = Field(description="The agent's turn, with the functions it called.")
    tool_calls: list[ToolCallOut]
    ended: bool = Field(description="The agent ended the conversation (end_call).")
