"""Everything a handler may use, built once per application by ``setup_api``; one view
per organisation (``Services.for_org``), which the pipeline hands to the handler of a
request authenticated as a principal of that organisation."""

from __future__ import annotations

import builtins
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from voxd.api.auth import KeyAuthority
from voxd.api.deps import AgentInfo, ApiDeps, ApiSettings
from voxd.api.oidc import OidcClient
from voxd.api.org_limits import OrgLimitCache
from voxd.api.ratelimit import BucketSet
from voxd.api.tokens import TokenIssuer
from voxd.api.usage import UsageRecorder
from voxd.core.calllog import CallRecord, Turn
from voxd.core.errors import NotFound, NotSupported
from voxd.core.sealing import Sealer
from voxd.core.secrets import Outbound
from voxd.store.repos import (
    AgentChangeRepo,
    ApiKeyRepo,
    AuditRepo,
    CallRepo,
    ConversationRepo,
    FunctionRepo,
    OidcRepo,
    SessionRepo,
    Store,
    TotpRepo,
    UserRepo,
)

DEFAULT_ORG = "default"


@dataclass
class Services:
    deps: ApiDeps
    keys: ApiKeyRepo
    calls: CallRepo
    functions: FunctionRepo
    agent_changes: AgentChangeRepo
    usage: UsageRecorder
    conversations: ConversationRepo
    buckets: BucketSet = field(default_factory=BucketSet)
    org_limits: OrgLimitCache = field(default_factory=OrgLimitCache)  # shared by the views, like buckets
    authority: KeyAuthority = field(init=False)
    org: str = DEFAULT_ORG
    db: Store = field(init=False)  # bound to ``org``; ``deps.db`` is the daemon's own (default)
    audit: AuditRepo = field(init=False)
    users: UserRepo = field(init=False)
    sessions: SessionRepo = field(init=False)
    tokens: TokenIssuer = field(init=False)
    totp: TotpRepo = field(init=False)
    oidc: OidcRepo = field(init=False)  # this organisation's single sign-on provider
    sso: OidcClient = field(init=False)  # discovery and key caches; one per daemon, shared by the views
    sealer: Sealer | None = None  # opens TOTP secrets; one per daemon, shared by the views
    _views: dict[str, Services] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        self.db = self.deps.db.for_org(self.org)
        self.audit = self.db.audit()
        self.users = self.db.users()
        self.sessions = self.db.sessions()
        path = str(self.deps.db.path)
        self.tokens = TokenIssuer.load(None if path == ":memory:" else Path(path).parent)
        if self.sealer is None:
            self.sealer = Sealer.ephemeral() if path == ":memory:" else Sealer.load(Path(path).parent)
        self.totp = self.db.totp(self.sealer)
        self.oidc = self.db.oidc(self.sealer)
        self.sso = OidcClient(lambda: self.outbound().policy)
        self.authority = KeyAuthority(self.keys, self.buckets, lambda: self.deps.settings, self.tokens,
                                      self.sessions)

    @property
    def settings(self) -> ApiSettings:
        return self.deps.settings

    def outbound(self) -> Outbound:
        return self.deps.outbound() if self.deps.outbound is not None else Outbound()

    def for_org(self, org: str) -> Services:
        """The view of ``org``: every repository bound to it; another organisation's agents
        and live calls come from ``deps.org_agents`` and ``deps.org_calls``, its text
        conversations from ``deps.org_conversations``."""
        if org == self.org:
            return self
        view = self._views.get(org)
        if view is None:
            db = self.deps.db.for_org(org)
            agents = self.deps.org_agents(org) if self.deps.org_agents is not None else NoAgents()
            calls = self.deps.org_calls(org) if self.deps.org_calls is not None else NoCalls()
            conversations = (self.deps.org_conversations(org) if self.deps.org_conversations is not None
                             else NoConversations())
            deps = replace(self.deps, agents=agents, calls=calls, conversations=conversations)
            view = Services(deps=deps, keys=db.api_keys(pepper=self.settings.pepper), calls=db.calls(),
                            functions=db.functions(), agent_changes=db.agent_changes(), usage=self.usage,
                            conversations=db.conversations(), buckets=self.buckets, org=org,
                            sealer=self.sealer, org_limits=self.org_limits)
            view.authority, view.tokens, view.sso = self.authority, self.tokens, self.sso
            self._views[org] = view
        return view

    @classmethod
    def build(cls, deps: ApiDeps) -> Services:
        keys = deps.db.api_keys(pepper=deps.settings.pepper)
        return cls(
            deps=deps,
            keys=keys,
            buckets=deps.buckets if deps.buckets is not None else BucketSet(),
            usage=UsageRecorder(keys),
            calls=deps.db.calls(),
            conversations=deps.db.conversations(),
            functions=deps.db.functions(),
            agent_changes=deps.db.agent_changes(),
        )


class NoAgents:
    """An organisation without an agent directory of its own: no agents, none to write."""

    async def list(self) -> builtins.list[AgentInfo]:
        return []

    async def get(self, name: str) -> tuple[AgentInfo, str, dict[str, Any]]:
        raise NotFound(f"no agent {name!r}")

    async def validate(self, yaml_text: str) -> builtins.list[dict[str, Any]]:
        return []

    async def put(self, name: str, yaml_text: str, actor: str) -> AgentInfo:
        raise NotSupported("this daemon keeps no agents for this organisation")

    async def delete(self, name: str, actor: str) -> None:
        raise NotFound(f"no agent {name!r}")


class NoCalls:
    """Live calls of an organisation other than the default: none are placed by this daemon yet."""

    async def active(self) -> builtins.list[dict[str, Any]]:
        return []

    async def end(self, call_id: str) -> bool:
        return False

    async def dial(self, agent: str, to: str, from_: str | None, trunk: str | None = None, *,
                   variables: dict[str, str] | None = None, recording: dict[str, Any] | None = None) -> str:
        raise NotFound(f"no agent {agent!r}")


class NoConversations:
    """An organisation whose text conversations this process does not run (no daemon)."""

    async def start(self, agent_name: str, metadata: dict[str, Any] | None = None,
                    variables: dict[str, str] | None = None) -> CallRecord:
        raise NotFound(f"no agent {agent_name!r}")

    async def send(self, conversation_id: str, text: str, progress: Any = None) -> Turn:
        raise NotFound(f"no active conversation {conversation_id!r}")

    async def end(self, conversation_id: str, reason: str = "api_end", ended_by: str = "system") -> CallRecord | None:
        return None
