from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from voxd.api.app import setup_api
from voxd.api.deps import ApiDeps, ApiSettings, RateSpec
from voxd.api.fakes import MemoryAgentSource, MemoryCallSource, MemoryFunctionSource
from voxd.api.keys_cli import create_key
from voxd.store.db import Database

PEPPER = "test-pepper-not-secret"
GENEROUS = ApiSettings(
    pepper=PEPPER,
    key_rate=RateSpec(100_000),
    ip_rate=RateSpec(100_000),
    failed_auth_rate=RateSpec(100_000),
    class_rates={"read": RateSpec(100_000), "write": RateSpec(100_000),
                 "execute": RateSpec(100_000)},
)

AGENT_YAML = """\
# front desk agent; comments are kept
name: front-desk
description: Answers the phone
greeting: Hello, how can I help?
turn:
  min_silence_ms: 250
"""


@dataclass
class Api:
    client: TestClient
    db: Database
    agents: MemoryAgentSource
    calls: MemoryCallSource
    functions: MemoryFunctionSource
    app: web.Application
    keys: dict[str, str] = field(default_factory=dict)

    async def key(self, *scopes: str, **kw: Any) -> str:
        return await create_key(self.db, kw.pop("name", "test"), list(scopes), pepper=PEPPER,
                                **kw)

    @staticmethod
    def auth(raw: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {raw}"}

    async def admin(self) -> dict[str, str]:
        if "admin" not in self.keys:
            self.keys["admin"] = await self.key("admin", name="admin")
        return self.auth(self.keys["admin"])


async def make_api(tmp_path, settings: ApiSettings = GENEROUS) -> tuple[Api, Any]:
    db = await Database.open(tmp_path / "voxd.db")
    agents, calls, functions = MemoryAgentSource(), MemoryCallSource(), MemoryFunctionSource()
    app = web.Application()
    setup_api(app, ApiDeps(db=db, agents=agents, calls=calls, functions=functions,
                           settings=settings))
    client = TestClient(TestServer(app, host="127.0.0.1"))
    await client.start_server()
    api = Api(client=client, db=db, agents=agents, calls=calls, functions=functions, app=app)

    async def close() -> None:
        await client.close()
        await api.db.close()

    return api, close


@pytest.fixture
async def api(tmp_path):
    a, close = await make_api(tmp_path)
    yield a
    await close()
