"""Suite-wide: each test's garbage is collected before the next one starts, so a leaked
socket or transport (a ResourceWarning, an error here) is reported on the test that
leaked it, not on whichever test the collector happened to run in.

Everything alive once the tests are collected (imported modules, their tables) is
frozen out of the collector's view, so each collection only walks what tests made."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


def pytest_collection_finish(session: pytest.Session) -> None:
    gc.collect()
    gc.freeze()


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[object]:
    """One PostgreSQL server for the session (tests/servers.py); each test takes a database."""
    from tests.servers import postgres

    with postgres() as server:
        yield server
