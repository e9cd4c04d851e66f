"""Reads and writes share one connection: a read must see either the state before a
write transaction's statement or after it, never a half-stepped mix."""

import asyncio

from voxd.store.db import Database

ROWS = 400


async def test_a_read_is_not_torn_by_a_write_on_the_same_connection(db: Database) -> None:
    async with db.transaction() as conn:
        await conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, status TEXT NOT NULL)")
        await conn.execute("CREATE INDEX t_status ON t (status)")
        await conn.executemany("INSERT INTO t (id, status) VALUES (?, 'a')", [(i,) for i in range(ROWS)])
    stop = asyncio.Event()

    async def writer() -> None:
        flip = 0
        while not stop.is_set():
            flip ^= 1
            async with db.transaction() as conn:
                await conn.execute("UPDATE t SET status = ? WHERE id % 3 = 0", ("b" if flip else "a",))

    seen: list[dict[object, int]] = []
    task = asyncio.create_task(writer())
    try:
        for _ in range(300):
            rows = await db.fetchall("SELECT status, COUNT(*) AS n FROM t GROUP BY status")
            seen.append({r["status"]: r["n"] for r in rows})
            one = await db.fetchone("SELECT COUNT(*) AS n FROM t WHERE status IN ('a', 'b')")
            assert one is not None and one["n"] == ROWS
    finally:
        stop.set()
        await task
    torn = [s for s in seen if sum(s.values()) != ROWS or not set(s) <= {"a", "b"}]
    assert not torn, torn[:3]
    assert any("b" in s for s in seen)  # the writer really ran between the reads
