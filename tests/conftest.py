"""Suite-wide: each test's garbage is collected before the next one starts, so a leaked
socket or transport (a ResourceWarning, an error here) is reported on the test that
leaked it, not on whichever test the collector happened to run in."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _collect_garbage() -> Iterator[None]:
    yield
    gc.collect()
