"""Everything a handler may use, built once per application by ``setup_api``."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxd.api.auth import KeyAuthority
from voxd.api.deps import ApiDeps, ApiSettings
from voxd.api.ratelimit import BucketSet
from voxd.api.usage import UsageRecorder
from voxd.store.repos import AgentChangeRepo, ApiKeyRepo, CallRepo, ConversationRepo, FunctionRepo


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
    authority: KeyAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.authority = KeyAuthority(self.keys, self.buckets, lambda: self.deps.settings)

    @property
    def settings(self) -> ApiSettings:
        return self.deps.settings

    @classmethod
    def build(cls, deps: ApiDeps) -> Services:
        keys = deps.db.api_keys(pepper=deps.settings.pepper)
        return cls(
            deps=deps,
            keys=keys,
            usage=UsageRecorder(keys),
            calls=deps.db.calls(),
            conversations=deps.db.conversations(),
            functions=deps.db.functions(),
            agent_changes=deps.db.agent_changes(),
        )
