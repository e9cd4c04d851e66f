"""Rows written with a call record (the webhook outbox) commit with it or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from voxd.core.calllog import CallRecord, new_call_id
from voxd.store.calls import CallRepository
from voxd.store.db import Database


async def test_also_writes_commit_with_the_record(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "v.db")
    try:
        repo = CallRepository(db)
        async with db.transaction() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS side (x TEXT)")
        rec = CallRecord(id=new_call_id(), agent="a", agent_version="1", transport="test")

        async def good(conn: Any) -> None:
            await conn.execute("INSERT INTO side VALUES ('started')")

        await repo.save(rec, also=[good])
        assert await repo.get(rec.id) is not None
        assert [tuple(r) for r in await db.fetchall("SELECT x FROM side")] == [("started",)]

        rec2 = CallRecord(id=new_call_id(), agent="a", agent_version="1", transport="test")

        async def bad(conn: Any) -> None:
            await conn.execute("INSERT INTO side VALUES ('lost')")
            raise RuntimeError("outbox write failed")

        with pytest.raises(RuntimeError):
            await repo.save(rec2, also=[bad])
        assert await repo.get(rec2.id) is None  # neither the record ...
        assert [tuple(r) for r in await db.fetchall("SELECT x FROM side")] == [("started",)]  # ... nor the row
    finally:
        await db.close()
