"""GET/DELETE /api/v1/calls/{id}/recording over HTTP: ranges, 416, scopes, organisations."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.api.conftest import Api
from voxd.api.recordings import Unsatisfiable, parse_range
from voxd.core.calllog import CallRecord
from voxd.media.recording import WavWriter
from voxd.store.db import Database


@pytest.mark.parametrize(("header", "size", "want"), [
    (None, 100, None),
    ("bytes=0-9", 100, (0, 9)),
    ("bytes=90-", 100, (90, 99)),
    ("bytes=-10", 100, (90, 99)),
    ("bytes=-500", 100, (0, 99)),
    ("bytes=50-5000", 100, (50, 99)),
    ("bytes=99-99", 100, (99, 99)),
    ("bytes=9-3", 100, None),  # invalid: ignored, the whole file
    ("bytes=0-1,5-6", 100, None),  # several ranges: the whole file
    ("items=0-1", 100, None),
    ("bytes=-", 100, None),
])
def test_range_header_to_span(header: str | None, size: int, want: tuple[int, int] | None) -> None:
    assert parse_range(header, size) == want


@pytest.mark.parametrize(("header", "size"), [("bytes=100-", 100), ("bytes=500-600", 100), ("bytes=-0", 100),
                                              ("bytes=0-", 0)])
def test_unsatisfiable_ranges(header: str, size: int) -> None:
    with pytest.raises(Unsatisfiable):
        parse_range(header, size)


def write_wav(directory: Path, call_id: str, seconds: float) -> bytes:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{call_id}.wav"
    w = WavWriter(path, 2)
    rng = np.random.default_rng(1)
    w.write(rng.integers(-9000, 9000, (int(seconds * 16000), 2)).astype(np.int16))
    w.close()
    return path.read_bytes()


async def store_recording(db: Database, directory: Path, call_id: str, org: str = "default",
                          seconds: float = 1.0) -> bytes:
    data = write_wav(directory, call_id, seconds)
    info: dict[str, Any] = {"status": "ready", "format": "wav", "channels": "stereo", "content_type": "audio/wav",
                            "duration_s": seconds, "bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    rec = CallRecord(id=call_id, agent="front-desk", agent_version="1", transport="sip", started_at=1.0,
                     ended_at=2.0, metadata={"recording": info})
    await db.for_org(org).calls().save(rec)
    return data


async def test_the_recording_streams_whole_and_by_range(api: Api, tmp_path: Path) -> None:
    data = await store_recording(api.db, tmp_path / "recordings", "call_rec1")
    h = api.auth(await api.key("recordings:read"))
    r = await api.client.get("/api/v1/calls/call_rec1/recording", headers=h)
    assert r.status == 200 and r.headers["Content-Type"] == "audio/wav"
    assert r.headers["Accept-Ranges"] == "bytes"
    assert await r.read() == data
    r = await api.client.get("/api/v1/calls/call_rec1/recording", headers={**h, "Range": "bytes=0-43"})
    assert r.status == 206 and r.headers["Content-Range"] == f"bytes 0-43/{len(data)}"
    body = await r.read()
    assert body == data[:44] and body[:4] == b"RIFF"
    r = await api.client.get("/api/v1/calls/call_rec1/recording", headers={**h, "Range": "bytes=-1000"})
    assert r.status == 206 and await r.read() == data[-1000:]
    assert r.headers["Content-Length"] == "1000"
    r = await api.client.get("/api/v1/calls/call_rec1/recording", headers={**h, "Range": "bytes=30000-"})
    mid = await r.read()
    assert r.status == 206 and mid == data[30000:]
    r = await api.client.get("/api/v1/calls/call_rec1/recording", headers={**h, "Range": f"bytes={len(data)}-"})
    assert r.status == 416 and r.headers["Content-Range"] == f"bytes */{len(data)}"
    assert (await r.json())["type"] == "urn:voxd:problem:range-not-satisfiable"


async def test_scopes_and_unknown_calls(api: Api, tmp_path: Path) -> None:
    await store_recording(api.db, tmp_path / "recordings", "call_rec2")
    calls_only = api.auth(await api.key("calls:read", "calls:write"))
    r = await api.client.get("/api/v1/calls/call_rec2/recording", headers=calls_only)
    assert r.status == 403
    r = await api.client.delete("/api/v1/calls/call_rec2/recording", headers=api.auth(await api.key("recordings:read")))
    assert r.status == 403
    r = await api.client.get("/api/v1/calls/call_nope/recording", headers=api.auth(await api.key("recordings:read")))
    assert r.status == 404
    r = await api.client.get("/api/v1/calls/call_rec2/recording")
    assert r.status == 401


async def test_another_organisations_recording_is_not_found(api: Api, tmp_path: Path) -> None:
    await api.db.orgs().create("acme")
    await store_recording(api.db, tmp_path / "recordings", "call_acme1", org="acme")
    mine = api.auth(await api.key("recordings:read", "recordings:write"))
    for method in ("GET", "DELETE"):
        r = await api.client.request(method, "/api/v1/calls/call_acme1/recording", headers=mine)
        assert r.status == 404, method
    assert (tmp_path / "recordings" / "call_acme1.wav").exists()


async def test_delete_removes_the_file_and_marks_the_call(api: Api, tmp_path: Path) -> None:
    await store_recording(api.db, tmp_path / "recordings", "call_rec3")
    h = api.auth(await api.key("recordings:read", "recordings:write", "calls:read"))
    r = await api.client.delete("/api/v1/calls/call_rec3/recording", headers=h)
    assert r.status == 200 and (await r.json()) == {"id": "call_rec3", "deleted": True}
    assert not (tmp_path / "recordings" / "call_rec3.wav").exists()
    r = await api.client.get("/api/v1/calls/call_rec3/recording", headers=h)
    assert r.status == 404
    call = await (await api.client.get("/api/v1/calls/call_rec3", headers=h)).json()
    assert call["metadata"]["recording"]["status"] == "deleted"
    r = await api.client.delete("/api/v1/calls/call_rec3/recording", headers=h)
    assert r.status == 404


async def test_a_record_cannot_point_the_api_at_another_file(api: Api, tmp_path: Path) -> None:
    """The file comes from the call id and format, never from a stored path."""
    secret = tmp_path / "secret.wav"
    secret.write_bytes(b"RIFF-not-for-you")
    await store_recording(api.db, tmp_path / "recordings", "call_rec4")
    (tmp_path / "recordings" / "call_rec4.wav").unlink()
    rec = await api.db.calls().get("call_rec4")
    assert rec is not None
    await api.db.calls().set_recording("call_rec4", {**rec["metadata"]["recording"], "path": str(secret)})
    r = await api.client.get("/api/v1/calls/call_rec4/recording", headers=api.auth(await api.key("recordings:read")))
    assert r.status == 404


async def test_an_outbound_call_can_override_the_agents_recording(api: Api) -> None:
    api.calls.can_dial = True
    h = api.auth(await api.key("calls:write"))
    body = {"agent": "front-desk", "to": "sip:bob@127.0.0.1", "recording": {"enabled": True, "format": "opus",
                                                                            "consent_prompt": None}}
    r = await api.client.post("/api/v1/calls", json=body, headers=h)
    assert r.status == 202, await r.text()
    assert api.calls.recordings == [{"enabled": True, "format": "opus"}]
    for bad in ({"format": "mp3"}, {"enabled": 0}, {"retention_days": -1}, {"colour": "blue"}):
        r = await api.client.post("/api/v1/calls", json={**body, "recording": bad}, headers=h)
        assert r.status == 422, bad
    assert len(api.calls.recordings) == 1
