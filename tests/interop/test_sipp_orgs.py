"""sipp (a third-party SIP client) calls two organisations' numbers: each call is answered by
the owning organisation's agent from ``agents/<org>/`` and stored as that organisation's."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.daemons import start_daemon
from tests.interop.test_sipp import free_udp_port, run_sipp, scenario
from voxd.store.calls import CallRepository

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("sipp"), reason="sipp not installed")]


def agent(greeting: str, number: str) -> str:
    return json.dumps({"greeting": greeting, "stt": {"engine": "fake", "options": {"transcripts": []}},
                       "llm": {"engine": "dialog"}, "voice": {"engine": "fake"}, "sip": {"numbers": [number]}})


async def test_sipp_reaches_each_organisations_own_agent(tmp_path: Path) -> None:
    for org, number in (("acme", "2100"), ("globex", "2200")):
        (tmp_path / "agents" / org).mkdir(parents=True)
        (tmp_path / "agents" / org / "desk.yaml").write_text(agent(f"{org} desk.", number))
    d = await start_daemon(tmp_path, {"desk": agent("default desk.", "2000")}, default_agent="desk",
                           drain_timeout_s=0, http={"enabled": False},
                           sip={"port": free_udp_port(), "rtp_port_min": 31400, "rtp_port_max": 31500, "ring_ms": 0})
    try:
        assert d.db is not None and d.calls is not None
        for org in ("acme", "globex"):
            await d.db.orgs().create(org)
        for number in ("2100", "2200"):
            work = tmp_path / number
            work.mkdir()
            await run_sipp(d, scenario(work, "short_call.xml", USER=number, HOLD_MS="800"), work, limit_s=20)
        await d.calls.flush()
        seen = {}
        for org in ("default", "acme", "globex"):
            rows, _ = await CallRepository(d.db.for_org(org)).list(limit=10)
            seen[org] = [(r["agent"], r["to_uri"].split("@")[0]) for r in rows]
        assert seen == {"default": [], "acme": [("desk", "sip:2100")], "globex": [("desk", "sip:2200")]}
        for org in ("acme", "globex"):
            (row,) = (await CallRepository(d.db.for_org(org)).list(limit=10))[0]
            call = await CallRepository(d.db.for_org(org)).get(row["id"])
            assert call is not None and call["turns"][0]["text"] == f"{org} desk."
    finally:
        await d.stop()
