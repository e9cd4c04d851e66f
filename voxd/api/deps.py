"""What the control API needs from the daemon, as typed Protocols.

The daemon (``voxd/app.py``) implements :class:`AgentSource`, :class:`CallSource` and
:class:`FunctionSource` and passes them in :class:`ApiDeps` to
:func:`voxd.api.app.setup_api`. ``voxd/api/fakes.py`` holds in-memory versions used by
the tests and ``scripts/bench_api.py``. Every method is a coroutine.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from voxd.core.calllog import CallRecord, Turn
from voxd.core.endreason import EndedBy
from voxd.core.secrets import Outbound
from voxd.store.repos import Store

if TYPE_CHECKING:
    from voxd.api.ratelimit import BucketSet
    from voxd.config import ApiLimits

PEPPER_ENV = "VOXD_API_KEY_PEPPER"


class InvalidAgent(ValueError):
    """``AgentSource.put`` refused the YAML; ``errors`` as ``AgentSource.validate`` returns them."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(str(e.get("message", "")) for e in errors))
        self.errors = errors


@dataclass(frozen=True)
class AgentInfo:
    name: str
    version: str  # bumps on every change; calls in progress keep the one they started with
    description: str
    path: str  # the YAML file on disk
    updated_at: float  # unix seconds


@runtime_checkable
class AgentSource(Protocol):
    async def list(self) -> list[AgentInfo]: ...

    async def get(self, name: str) -> tuple[AgentInfo, str, dict[str, Any]]:
        """(info, the YAML text as on disk, the parsed config as a plain dict); NotFound."""
        ...

    async def validate(self, yaml_text: str) -> builtins.list[dict[str, Any]]:
        """Errors as ``{"field": "turn.min_silence_ms", "line": 12 | None, "message": ...}``;
        empty when valid. Same schema as file loading (``voxd.agents.schema.AgentConfig``)."""
        ...

    async def put(self, name: str, yaml_text: str, actor: str) -> AgentInfo:
        """Write the file atomically (temp + rename), reload, bump the version.
        Raises InvalidAgent when the YAML does not validate."""
        ...

    async def delete(self, name: str, actor: str) -> None:
        """Remove the agent's file; NotFound when there is none."""
        ...


@runtime_checkable
class CallSource(Protocol):
    async def active(self) -> builtins.list[dict[str, Any]]:
        """Calls in progress, each as ``CallRecord.to_dict()``."""
        ...

    async def end(self, call_id: str) -> bool:
        """Hang up an active call; False when no such call is active."""
        ...

    async def dial(self, agent: str, to: str, from_: str | None, trunk: str | None = None, *,
                   variables: dict[str, str] | None = None, recording: dict[str, Any] | None = None) -> str:
        """Start an outbound call and return its id. Raises NotSupported when no transport
        can dial, NotFound for an unknown agent or trunk, ValueError for an unusable ``to``,
        AtCapacity when the trunk's caps are reached."""
        ...


@runtime_checkable
class FunctionSource(Protocol):
    async def list(self) -> list[dict[str, Any]]:
        """``{"name", "description", "parameters" (JSON Schema), "builtin": bool}`` for every
        function the daemon knows. Custom functions stored by the API (``FunctionRepository``)
        are merged in by the API; the daemon may list them too (the API dedupes by name)."""
        ...

    async def get(self, name: str) -> dict[str, Any]:
        """One entry as in ``list``; NotFound."""
        ...

    async def execute(
        self, name: str, arguments: dict[str, Any], custom: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        """Run it once, outside a call. ``custom`` is the stored record (description,
        parameters, http spec) for custom functions, None for built-ins. Returns
        ``{"result": Any, "error": str | None, "duration_ms": float}``."""
        ...


@runtime_checkable
class ConversationSource(Protocol):
    """Text conversations (``voxd.call.conversations.ConversationManager``); each saves the
    conversation to the database before it returns, so the API reads it from the store."""

    async def start(self, agent_name: str, metadata: dict[str, Any] | None = None,
                    variables: dict[str, str] | None = None) -> CallRecord:
        """The new conversation's record; NotFound for an unknown agent."""
        ...

    async def send(self, conversation_id: str, text: str,
                   progress: Callable[[str, dict[str, Any]], None] | None = None) -> Turn:
        """The agent's reply turn. ``progress`` hears ("text", {"text"}) per clause and
        ("tool_call", {...}) per function as they happen. NotFound; ConversationEnded."""
        ...

    async def end(self, conversation_id: str, reason: str = "api_end",
                  ended_by: EndedBy = "system") -> CallRecord | None:
        """End it; None when it is not active."""
        ...


@dataclass(frozen=True)
class RateSpec:
    """A token bucket: ``requests`` per ``window_s`` seconds, burst up to ``requests``."""

    requests: int
    window_s: float = 60.0


def _default_classes() -> dict[str, RateSpec]:
    return {
        "read": RateSpec(1200),
        "write": RateSpec(120),
        "execute": RateSpec(60),
    }


@dataclass(frozen=True)
class ApiSettings:
    # HMAC key mixed into stored key hashes; the CLI must use the same one.
    pepper: str = field(default_factory=lambda: os.environ.get(PEPPER_ENV, ""), repr=False)
    key_rate: RateSpec = RateSpec(600)  # per key, unless the key sets its own per-minute rate
    ip_rate: RateSpec = RateSpec(60)  # per client IP, for requests without a valid key
    failed_auth_rate: RateSpec = RateSpec(10, 300.0)  # failed authentications per client IP
    class_rates: dict[str, RateSpec] = field(default_factory=_default_classes)  # per key
    max_body_bytes: int = 256 * 1024
    max_query_bytes: int = 4096
    max_json_depth: int = 64  # nested objects/arrays in a JSON body
    trust_forwarded_for: bool = False  # use X-Forwarded-For's first hop as the client IP


def api_settings(lim: ApiLimits, pepper: str | None = None) -> ApiSettings:
    """The `api:` block of voxd.yaml as the pipeline's settings (the pepper from the
    environment unless given: a reload keeps the running one)."""
    return ApiSettings(
        pepper=os.environ.get(PEPPER_ENV, "") if pepper is None else pepper,
        key_rate=RateSpec(lim.per_key_per_minute), ip_rate=RateSpec(lim.per_ip_per_minute),
        failed_auth_rate=RateSpec(lim.failed_auth_per_5min, 300.0),
        class_rates={"read": RateSpec(lim.read_per_minute), "write": RateSpec(lim.write_per_minute),
                     "execute": RateSpec(lim.execute_per_minute)},
        max_body_bytes=lim.max_body_bytes, trust_forwarded_for=lim.trust_forwarded_for,
        max_json_depth=lim.max_json_depth,
    )


@dataclass
class ApiDeps:
    db: Store
    agents: AgentSource
    calls: CallSource
    functions: FunctionSource
    settings: ApiSettings = field(default_factory=ApiSettings)
    conversations: ConversationSource | None = None  # None: setup_api builds a stand-alone one
    # another organisation's text conversations (on its agents, stored with it); None: none
    org_conversations: Callable[[str], ConversationSource] | None = None
    # the agents of an organisation other than the default (``agents/<org>/``); None: it has none
    org_agents: Callable[[str], AgentSource] | None = None
    # the live calls of an organisation other than the default; None: it has none
    org_calls: Callable[[str], CallSource] | None = None
    buckets: BucketSet | None = None  # rate-limit buckets (None: this process's own, voxd.api.ratelimit)
    recordings: Path | None = None  # the recordings folder; None: <database folder>/recordings
    # the egress policy and declared secrets, read per request (SIGHUP): single sign-on's
    # requests to an organisation's provider go through it (use ``sso``); strict when None
    outbound: Callable[[], Outbound] | None = None
