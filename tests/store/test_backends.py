"""``store.url`` picks the backend: SQLite by default or by ``sqlite://`` URL."""

from __future__ import annotations

from pathlib import Path

import pytest

from voxd.config import VoxdConfig
from voxd.store.backends import backend_of, open_store, sqlite_path
from voxd.store.db import Database


def test_urls_name_their_backend() -> None:
    assert backend_of("postgresql://voxd@db:5432/voxd") == backend_of("postgres://h/d") == "postgresql"
    assert sqlite_path("sqlite:///var/voxd.db") == Path("var/voxd.db")
    assert sqlite_path("sqlite:////srv/voxd/voxd.db") == Path("/srv/voxd/voxd.db")
    for bad in ("sqlite://host/x.db", "sqlite:///"):
        with pytest.raises(ValueError):
            sqlite_path(bad)
    with pytest.raises(ValueError, match="unknown scheme"):
        backend_of("mysql://h/d")
    with pytest.raises(ValueError, match=r"store\.url"):
        VoxdConfig.model_validate({"store": {"url": "mysql://h/d"}})


async def test_sqlite_by_default_or_by_url(tmp_path: Path) -> None:
    db = await open_store(None, default_path=tmp_path / "a.db", state_dir=tmp_path)
    try:
        assert isinstance(db, Database) and db.path == tmp_path / "a.db"
    finally:
        await db.close()
    db = await open_store(f"sqlite:///{tmp_path}/b.db", default_path=tmp_path / "a.db", state_dir=tmp_path)
    try:
        assert isinstance(db, Database) and db.path == tmp_path / "b.db" and (tmp_path / "b.db").exists()
    finally:
        await db.close()
