"""A call's SIP trace over the API: sipp (a third-party SIP client) calls through a trunk
with digest authentication; `GET /api/v1/calls/{id}/sip-trace` gives every message of the
call as text (the digest response masked) and as a pcap that tshark decodes into the same
SIP messages; another organisation's key gets 404, a key without calls:read 403."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon
from tests.interop.test_sipp import free_udp_port, records, run_sipp, scenario
from tests.interop.test_sipp_carrier import QUIET_AGENT
from voxd.api.keys_cli import create_key

pytestmark = [pytest.mark.interop, pytest.mark.skipif(not shutil.which("tshark"), reason="tshark not installed")]


def tshark_fields(path: Path, *fields: str) -> str:
    return subprocess.run(["tshark", "-r", str(path), "-T", "fields", "-E", "separator=|",
                           *[x for f in fields for x in ("-e", f)]],
                          capture_output=True, text=True, check=True, timeout=60).stdout


async def test_sip_trace_text_and_pcap_org_scoped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("VOXD_TEST_TRUNK_PW", "s3cret-pw")
    d = await start_daemon(tmp_path, {"front": QUIET_AGENT}, default_agent="front", sip={
        "port": free_udp_port(), "rtp_port_min": 31700, "rtp_port_max": 31800, "ring_ms": 0,
        "trunks": [{"name": "lab", "allow": ["127.0.0.0/8"], "username": "alice", "password_env": "VOXD_TEST_TRUNK_PW",
                    "realm": "voxd", "algorithms": ["MD5"]}]})
    try:
        await run_sipp(d, scenario(tmp_path, "auth.xml", USER="2000"), tmp_path, "-au", "alice", "-ap", "s3cret-pw",
                       limit_s=30)
        (rec,) = await records(d)
        assert d.sip_tracer is not None
        await d.sip_tracer.sweep(float("inf"))  # past the linger: the trace is on disk now
        assert (tmp_path / "state" / "sip-traces" / f"{rec['id']}.jsonl").is_file()
        assert d.db is not None
        key = await create_key(d.db, "t", ["calls:read"])
        await d.db.orgs().create("acme")
        other = await create_key(d.db.for_org("acme"), "t", ["calls:read"])
        narrow = await create_key(d.db, "t", ["agents:read"])
        url = f"http://127.0.0.1:{d.http_port}/api/v1/calls/{rec['id']}/sip-trace"
        async with aiohttp.ClientSession() as http:
            auth = {"Authorization": f"Bearer {key}"}
            async with http.get(url, headers=auth) as r:
                assert r.status == 200 and r.content_type == "text/plain"
                text = await r.text()
            async with http.get(url, params={"format": "pcap"}, headers=auth) as r:
                assert r.status == 200 and r.content_type == "application/vnd.tcpdump.pcap"
                pcap = await r.read()
            async with http.get(url, headers={**auth, "Accept": "application/vnd.tcpdump.pcap"}) as r:
                assert r.status == 200 and await r.read() == pcap
            async with http.get(url, headers={"Authorization": f"Bearer {other}"}) as r:
                assert r.status == 404  # another organisation's call does not exist for it
            async with http.get(url, headers={"Authorization": f"Bearer {narrow}"}) as r:
                assert r.status == 403
            async with http.get(url.replace(rec["id"], "call_nope"), headers=auth) as r:
                assert r.status == 404
    finally:
        await d.stop()
    heads = re.findall(r"^\S+Z (in |out) \S+ (?:<-|->) \S+ UDP\n(.*)$", text, re.MULTILINE)
    firsts = [(direction.strip(), line) for direction, line in heads]
    assert firsts[:2] == [("in", f"INVITE sip:2000@127.0.0.1:{d.cfg.sip.port} SIP/2.0"),
                          ("out", "SIP/2.0 401 Unauthorized")]
    lines = [line for _, line in firsts]
    assert "SIP/2.0 401 Unauthorized" in lines and lines.count("SIP/2.0 200 OK") >= 2  # INVITE and BYE
    assert any(line.startswith("BYE ") for line in lines) and sum(line.startswith("ACK ") for line in lines) == 2
    assert 'response="<masked>"' in text and not re.search(r'response="?[0-9a-f]{32}', text)
    assert "s3cret-pw" not in text
    path = tmp_path / "trace.pcap"
    path.write_bytes(pcap)
    out = tshark_fields(path, "sip.Method", "sip.Status-Code", "sip.Call-ID")
    rows = [row.split("|") for row in out.strip().splitlines()]
    assert len(rows) == len(firsts)  # one SIP datagram per message of the trace
    assert {row[2] for row in rows} == {rec["metadata"]["sip_call_id"]}
    decoded = [row[0] or row[1] for row in rows]
    assert decoded == [line.split()[0] if not line.startswith("SIP/2.0") else line.split()[1] for line in lines]
