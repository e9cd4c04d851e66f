import sqlite3

import pytest

from voxd.store.db import Database, MigrationError
from voxd.store.migrations import MIGRATIONS, Migration

LATEST = MIGRATIONS[-1].version


def _tables(path):
    with sqlite3.connect(path) as conn:
        return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_versions_are_consecutive():
    assert [m.version for m in MIGRATIONS] == list(range(1, LATEST + 1))


async def test_from_empty(tmp_path):
    path = tmp_path / "voxd.db"
    db = await Database.open(path)
    try:
        assert await db.schema_version() == LATEST
        mode = await db.fetchone("PRAGMA journal_mode")
        assert mode is not None and mode[0] == "wal"
        fk = await db.fetchone("PRAGMA foreign_keys")
        assert fk is not None and fk[0] == 1
    finally:
        await db.close()
    expected = {"calls", "turns", "api_keys", "key_usage", "functions", "agent_changes"}
    assert expected <= _tables(path)


@pytest.mark.parametrize("start", range(1, LATEST))
async def test_from_each_earlier_version(tmp_path, start):
    path = tmp_path / "voxd.db"
    db = await Database.open(path, target_version=start)
    assert await db.schema_version() == start
    async with db.transaction() as conn:
        await conn.execute(
            "INSERT INTO calls (id, agent, agent_version, transport, direction, status, started_at)"
            " VALUES ('call_old', 'a', '1', 'sip', 'inbound', 'ended', 1.0)"
        )
    await db.close()
    assert "functions" not in _tables(path) or start >= 3

    db = await Database.open(path)
    try:
        assert await db.schema_version() == LATEST
        row = await db.fetchone("SELECT id FROM calls")
        assert row is not None and row["id"] == "call_old"
        rows = await db.fetchall("SELECT version FROM schema_version ORDER BY version")
        assert [r["version"] for r in rows] == list(range(1, LATEST + 1))
    finally:
        await db.close()


async def test_reopen_is_a_no_op(tmp_path):
    path = tmp_path / "voxd.db"
    await (await Database.open(path)).close()
    db = await Database.open(path)
    try:
        rows = await db.fetchall("SELECT version FROM schema_version")
        assert len(rows) == LATEST
    finally:
        await db.close()


async def test_newer_database_is_refused(tmp_path):
    path = tmp_path / "voxd.db"
    extra = (*MIGRATIONS, Migration(LATEST + 1, "future", ("CREATE TABLE future (x)",)))
    await (await Database.open(path, migrations=extra)).close()
    with pytest.raises(MigrationError, match="schema version"):
        await Database.open(path)


async def test_failed_migration_rolls_back(tmp_path):
    path = tmp_path / "voxd.db"
    bad = (*MIGRATIONS, Migration(LATEST + 1, "bad", ("CREATE TABLE ok (x)", "NOT SQL")))
    with pytest.raises(sqlite3.OperationalError):
        await Database.open(path, migrations=bad)
    assert "ok" not in _tables(path)
    db = await Database.open(path)
    try:
        assert await db.schema_version() == LATEST
    finally:
        await db.close()
