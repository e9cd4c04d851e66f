"""Everything a handler may use, built once per application by ``setup_api``."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxd.api.auth import KeyAuthority
from voxd.api.deps import ApiDeps, ApiSettings
from voxd.api.ratelimit import BucketSet
from voxd.api.usage import UsageRecorder
from voxd.store.agent_changes import AgentChangeRepository
from voxd.store.calls import CallRepository
from voxd.store.functions import FunctionRepository
from voxd.store.keys import ApiKeyRepository


@dataclass
class Services:
    deps: ApiDeps
    keys: ApiKeyRepository
    calls: CallRepository
    functions: FunctionRepository
    agent_changes: AgentChangeRepository
    usage: UsageRecorder
    buckets: BucketSet = field(default_factory=BucketSet)
    authority: KeyAuthority = field(init=False)

    def __post_init__(self) -> None:
        self.authority = KeyAuthority(self.keys, self.buckets, lambda: self.deps.settings)

    @property
    def settings(self) -> ApiSettings:
        return self.deps.settings

    @classmethod
    def build(cls, deps: ApiDeps) -> Services:
        keys = ApiKeyRepository(deps.db, pepper=deps.settings.pepper)
        return cls(
            deps=deps,
            keys=keys,
            usage=UsageRecorder(keys),
            calls=CallRepository(deps.db),
            functions=FunctionRepository(deps.db),
            agent_changes=AgentChangeRepository(deps.db),
        )
