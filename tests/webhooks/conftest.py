from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from tests.servers import backend_params, open_test_store
from voxd.config import WebhooksConfig
from voxd.store.db import Database
from voxd.webhooks.delivery import ALLOW_PRIVATE_ENV
from voxd.webhooks.service import Webhooks

from .receiver import Receiver


def config(**kw: Any) -> WebhooksConfig:
    base: dict[str, Any] = {"allow_private_destinations": True, "retry_schedule_s": [0.3, 0.6, 0.9],
                            "retry_jitter": 0.1, "timeout_s": 2.0}
    return WebhooksConfig.model_validate(base | kw)


@pytest.fixture(autouse=True)
def _no_env_allowance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PRIVATE_ENV, raising=False)


@pytest.fixture(params=backend_params())
async def db(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[Database]:
    d: Any = await open_test_store(request.param, tmp_path, request)
    yield d
    await d.close()


@pytest.fixture
async def hooks(db: Database) -> AsyncIterator[Webhooks]:
    h = Webhooks(db, config())
    await h.start()
    yield h
    await h.stop()


@pytest.fixture
async def receiver() -> AsyncIterator[Receiver]:
    r = Receiver()
    await r.start()
    yield r
    await r.stop()
