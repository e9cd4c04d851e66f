"""Finding 8 (webhook secrets in plain text): the database file held every endpoint's
whsec_ signing secret. They are sealed now (AES-GCM, key outside the database), existing
rows are sealed at start, and deliveries still verify with the secret shown once."""

from __future__ import annotations

import base64
import sqlite3
from pathlib import Path

import pytest

from tests.api.conftest import make_api
from tests.webhooks.receiver import Receiver
from voxd.core.sealing import KEY_ENV, Sealer, SealError
from voxd.store.db import Database
from voxd.webhooks.delivery import ALLOW_PRIVATE_ENV
from voxd.webhooks.service import Webhooks


def raw_secrets(db_file: Path) -> list[tuple[str, str | None]]:
    with sqlite3.connect(db_file) as conn:
        return conn.execute("SELECT secret, previous_secret FROM webhook_endpoints").fetchall()


@pytest.fixture
async def receiver() -> Receiver:
    r = Receiver()
    await r.start()
    yield r  # type: ignore[misc]
    await r.stop()


async def test_the_database_holds_no_webhook_secret(tmp_path: Path, receiver: Receiver,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    monkeypatch.delenv(KEY_ENV, raising=False)
    api, close = await make_api(tmp_path)
    try:
        admin = await api.admin()
        created = await (await api.client.post("/api/v1/webhooks", json={"url": receiver.url}, headers=admin)).json()
        secret = created["secret"]
        rotated = await (await api.client.post(f"/api/v1/webhooks/{created['id']}/rotate-secret",
                                               json={"overlap_s": 3600}, headers=admin)).json()
        receiver.secrets = [rotated["secret"]]
        test = await (await api.client.post(f"/api/v1/webhooks/{created['id']}/test", headers=admin)).json()
        assert test["status"] == "succeeded"  # signed with the opened secret, verified by the receiver
    finally:
        await close()
    stored = raw_secrets(tmp_path / "voxd.db")
    dump = b"".join(p.read_bytes() for p in sorted(tmp_path.iterdir()) if p.name.startswith("voxd.db"))  # noqa: ASYNC240
    assert secret.encode() not in dump and rotated["secret"].encode() not in dump
    assert all(v is None or v.startswith("sealed:v1:") for row in stored for v in row), stored
    key = tmp_path / "secrets.key"
    assert key.stat().st_mode & 0o777 == 0o600 and len(key.read_bytes()) == 32


async def test_existing_plain_rows_are_sealed_at_start(tmp_path: Path, receiver: Receiver,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ALLOW_PRIVATE_ENV, "1")
    monkeypatch.setenv(KEY_ENV, base64.b64encode(b"k" * 32).decode())
    db = await Database.open(tmp_path / "voxd.db")
    try:
        old = Webhooks(db)
        old.store.sealer = None  # what a daemon before sealing wrote
        ep = await old.create_endpoint("test", url=receiver.url)
        assert raw_secrets(tmp_path / "voxd.db")[0][0] == ep.secret
        hooks = Webhooks(db)
        await hooks.start()
        try:
            assert raw_secrets(tmp_path / "voxd.db")[0][0].startswith("sealed:v1:")
            receiver.secrets = [ep.secret]
            _, status, _ = await hooks.test(ep)
            assert status == "succeeded"
        finally:
            await hooks.stop()
        # without the key, the secret does not open: a clear error, not garbage signatures
        other = Webhooks(db, sealer=Sealer(b"x" * 32, "another key"))
        with pytest.raises(SealError, match="another key"):
            await other.store.get_endpoint(ep.id)
    finally:
        await db.close()
