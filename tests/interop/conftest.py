"""Interop tests need third-party clients. Locally a missing client skips its tests;
in CI (CI=true) a missing client is an error, so a broken install cannot pass silently."""

from __future__ import annotations

import os
import shutil

import pytest

CLIENTS = ("sipp", "baresip", "linphonec", "tshark", "turnserver", "chromium", "node", "sox", "script", "kamailio")


def pytest_collection_finish(session: pytest.Session) -> None:
    if os.environ.get("CI", "").lower() not in ("1", "true", "yes"):
        return
    if not any(item.get_closest_marker("interop") for item in session.items):
        return
    missing = [c for c in CLIENTS if shutil.which(c) is None]
    if missing:
        raise pytest.UsageError(f"interop clients missing in CI: {', '.join(missing)} (scripts/setup.sh installs them)")
