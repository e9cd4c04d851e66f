"""create_calendar_event on a real Radicale CalDAV server (a subprocess on 127.0.0.1),
and in voxd's own store, exported as iCalendar."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import caldav
import icalendar
import pytest

from tests.tools.conftest import Ctx
from voxd.config.tools import CalendarConfig, ToolsConfig
from voxd.store.db import Database
from voxd.tools.calendar_events import calendar_ics
from voxd.tools.library import ToolLibrary


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def radicale(tmp_path: Path) -> Iterator[str]:
    """A Radicale server with user voxd/pw and an empty calendar; yields the calendar URL."""
    users = tmp_path / "users"
    users.write_text("voxd:pw\n")
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "radicale", "--config", "", "--server-hosts", f"127.0.0.1:{port}",
         "--storage-filesystem-folder", str(tmp_path / "collections"), "--auth-type", "htpasswd",
         "--auth-htpasswd-filename", str(users), "--auth-htpasswd-encryption", "plain",
         "--logging-level", "warning"],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"radicale did not start: {proc.stderr.read() if proc.stderr else ''!r}") from None
                time.sleep(0.1)
        base = f"http://127.0.0.1:{port}"
        with caldav.DAVClient(url=base, username="voxd", password="pw") as client:
            client.principal().make_calendar(name="Bookings", cal_id="bookings")
        yield f"{base}/voxd/bookings/"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()


async def test_event_on_caldav_server(radicale: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_CALDAV_PASSWORD", "pw")
    cfg = ToolsConfig(calendar=CalendarConfig(url=radicale, username="voxd", password_env="VOXD_TEST_CALDAV_PASSWORD"))
    lib = ToolLibrary(cfg, base_dir=tmp_path, embedder=None)
    args = {"title": "Haircut for Ann", "start": "2026-12-03T15:00", "duration_minutes": 45,
            "location": "Main St salon", "attendee_email": "ann@customer.example"}
    res = await lib.base.execute("create_calendar_event", args, Ctx(tz="Europe/Paris"))
    assert res.error is None, res.error
    assert res.result["calendar"] == "caldav"
    assert res.result["start"] == "2026-12-03T15:00:00+01:00" and res.result["end"] == "2026-12-03T15:45:00+01:00"

    with caldav.DAVClient(url=radicale, username="voxd", password="pw") as client:
        events = client.calendar(url=radicale).events()
        assert len(events) == 1
        cal = icalendar.Calendar.from_ical(events[0].data)
    ev = next(iter(cal.walk("VEVENT")))
    assert str(ev["UID"]) == res.result["event_id"]
    assert str(ev["SUMMARY"]) == "Haircut for Ann" and str(ev["LOCATION"]) == "Main St salon"
    assert ev.decoded("DTSTART") == datetime.fromisoformat("2026-12-03T15:00:00+01:00")


async def test_caldav_refusal_is_a_recoverable_error(radicale: str, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_CALDAV_PASSWORD", "not-it")
    cfg = ToolsConfig(calendar=CalendarConfig(url=radicale, username="voxd", password_env="VOXD_TEST_CALDAV_PASSWORD"))
    lib = ToolLibrary(cfg, base_dir=tmp_path, embedder=None)
    res = await lib.base.execute("create_calendar_event", {"title": "x", "start": "2026-12-03T15:00"}, Ctx())
    assert res.error is not None and res.error.startswith("the calendar server refused the event")
    bad = await lib.base.execute("create_calendar_event", {"title": "x", "start": "next tuesday"}, Ctx())
    assert bad.error is not None and "ISO 8601" in bad.error


async def test_event_in_voxd_store_exported_as_ics(tmp_path: Path) -> None:
    db = await Database.open(tmp_path / "voxd.db")
    try:
        lib = ToolLibrary(base_dir=tmp_path, db=db, embedder=None)
        res = await lib.base.execute("create_calendar_event",
                                     {"title": "Call back Bob", "start": "2026-12-04T09:30:00-05:00"},
                                     Ctx(tz="America/New_York"))
        assert res.error is None, res.error
        assert res.result["calendar"] == "voxd"
        ics = await calendar_ics(db)
    finally:
        await db.close()
    cal = icalendar.Calendar.from_ical(ics)
    [ev] = list(cal.walk("VEVENT"))
    assert str(ev["UID"]) == res.result["event_id"] and str(ev["SUMMARY"]) == "Call back Bob"
    assert ev.decoded("DTEND") == datetime.fromisoformat("2026-12-04T10:00:00-05:00")  # default 30 minutes
    assert ics.startswith("BEGIN:VCALENDAR") and "PRODID:-//voxd//voice agent//EN" in ics
