"""A task cancelled while its write transaction begins or commits leaves the connection
usable: the next writer's BEGIN must not find a transaction already open (seen as
"cannot start a transaction within a transaction" when the daemon stopped while key
usage was being flushed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from voxd.store.db import Database


async def _write(db: Database, n: int) -> None:
    async with db.transaction() as tx:
        await tx.execute("INSERT INTO t(n) VALUES (?)", (n,))


async def test_cancelled_writers_leave_the_connection_usable(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "voxd.db")
    try:
        async with db.transaction() as tx:
            await tx.execute("CREATE TABLE t(n INTEGER)")
        # cancel writers at every point of their transaction, a few loop turns in
        for turns in range(8):
            for _ in range(5):
                task = asyncio.create_task(_write(db, -1))
                for _ in range(turns):
                    await asyncio.sleep(0)
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)
                await _write(db, turns)  # raised before the fix
        rows = await db.fetchall("SELECT n FROM t WHERE n >= 0")
        assert len(rows) == 40
        assert not db._conn.in_transaction
    finally:
        await db.close()
