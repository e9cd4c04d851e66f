"""Which store backend a ``store.url`` names, opened: the composition root's one call."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from voxd.store.base import SqlStore


def sqlite_path(url: str) -> Path:
    """``sqlite:///relative.db`` or ``sqlite:////absolute/path.db`` (SQLAlchemy's spelling)."""
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/"):
        raise ValueError(f"store.url {url!r}: write sqlite:///relative/path.db or sqlite:////absolute/path.db")
    path = parts.path[1:]
    if not path:
        raise ValueError(f"store.url {url!r} names no file")
    return Path(path)


def backend_of(url: str) -> str:
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres"):
        return "postgresql"
    raise ValueError(f"store.url: unknown scheme {scheme!r} (sqlite:// or postgresql://)")


async def open_store(url: str | None, *, default_path: Path, state_dir: Path) -> SqlStore:
    """SQLite at ``default_path`` without a url; else the database the url names."""
    if url is None or backend_of(url) == "sqlite":
        from voxd.store.db import Database

        return await Database.open(default_path if url is None else sqlite_path(url))
    from voxd.store.pg import PgDatabase

    return await PgDatabase.open(url, state_dir=state_dir)
