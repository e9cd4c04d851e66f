"""The audit log on a real daemon: a scripted session (create an agent through the API,
edit it on disk, rotate a webhook secret, revoke a key) yields exactly those rows, chained;
editing a row in SQLite makes ``voxd audit verify`` fail naming it."""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon
from voxd.cli import main as cli_main
from voxd.store.audit import GENESIS, state_hash

AGENT = "greeting: {greeting}\nstt: {{engine: fake}}\nvoice: {{engine: fake}}\n"


async def cli(argv: list[str]) -> int:
    return await asyncio.to_thread(cli_main, argv)


async def _rows(db, n: int) -> list[dict]:
    for _ in range(200):
        rows = await db.fetchall("SELECT * FROM audit_log ORDER BY seq")
        if len(rows) >= n:
            return [dict(r) for r in rows]
        await asyncio.sleep(0.02)
    return [dict(r) for r in await db.fetchall("SELECT * FROM audit_log ORDER BY seq")]


@pytest.mark.timeout(60)
async def test_a_scripted_session_yields_exactly_its_rows(tmp_path: Path, capsys) -> None:
    d = await start_daemon(tmp_path, {}, reload_interval_s=30)
    try:
        assert d.db is not None
        keys = d.db.api_keys()
        raw, admin = await keys.create("admin", ["admin"], created_by="setup")
        _, doomed = await keys.create("doomed", ["calls:read"], created_by="setup")
        hook = await d.db.webhooks().create_endpoint(url="https://example.com/hook", secret="whsec_" + "a" * 32,
                                                     created_by="setup", events=["call.ended"])
        base, h = f"http://127.0.0.1:{d.http_port}", {"Authorization": f"Bearer {raw}"}
        async with aiohttp.ClientSession() as http:
            async with http.post(f"{base}/api/v1/agents", json={"yaml": "name: desk\n" + AGENT.format(
                    greeting="Hello.")}, headers=h) as r:
                assert r.status == 201, await r.text()
            path = d.agents.directory / "desk.yaml"
            path.write_text("name: desk\n" + AGENT.format(greeting="Edited on disk."))
            await d.agents.refresh(force=True)
            await _rows(d.db, 2)
            async with http.get(f"{base}/api/v1/webhooks/{hook.id}", headers=h) as r:
                hook_before = await r.text()
            async with http.get(f"{base}/api/v1/api-keys/{doomed.id}", headers=h) as r:
                key_before = await r.text()
            async with http.post(f"{base}/api/v1/webhooks/{hook.id}/rotate-secret", json={"overlap_s": 0},
                                 headers=h) as r:
                assert r.status == 200, await r.text()
            async with http.delete(f"{base}/api/v1/api-keys/{doomed.id}", headers=h) as r:
                assert r.status == 200
        rows = await _rows(d.db, 4)
        assert [(r["actor"], r["action"], r["target"]) for r in rows] == [
            (admin.id, "create_agent", "/api/v1/agents"),
            ("system", "agent_file_updated", "agents/desk"),
            (admin.id, "rotate_webhook_secret", f"/api/v1/webhooks/{hook.id}/rotate-secret"),
            (admin.id, "revoke_key", f"/api/v1/api-keys/{doomed.id}"),
        ]
        assert all(r["org"] == "default" for r in rows)
        assert rows[0]["ip"] == "127.0.0.1" and rows[1]["ip"] is None
        assert rows[0]["prev_hash"] == GENESIS
        assert all(b["prev_hash"] == a["hash"] for a, b in itertools.pairwise(rows))
        assert all(r["after_hash"] for r in rows)
        # the state before each change, as its GET showed it (a create has none)
        assert rows[0]["before_hash"] is None
        assert rows[1]["before_hash"] == state_hash("name: desk\n" + AGENT.format(greeting="Hello."))
        assert rows[2]["before_hash"] == state_hash(hook_before)
        assert rows[3]["before_hash"] == state_hash(key_before)
        assert rows[2]["before_hash"] != rows[2]["after_hash"]
        assert await d.db.audit().verify() is None
        assert "whsec_" not in str(rows)
    finally:
        await d.stop()

    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    assert await cli(["audit", "-c", str(config), "verify"]) == 0
    with sqlite3.connect(tmp_path / "state" / "voxd.db") as conn:
        conn.execute("UPDATE audit_log SET actor = 'someone-else' WHERE seq = 3")
    capsys.readouterr()
    assert await cli(["audit", "-c", str(config), "verify"]) == 1
    assert "row 3 " in capsys.readouterr().err
    with sqlite3.connect(tmp_path / "state" / "voxd.db") as conn:  # a deleted row breaks the chain too
        conn.execute("UPDATE audit_log SET actor = ? WHERE seq = 3", (rows[2]["actor"],))
        conn.execute("DELETE FROM audit_log WHERE seq = 2")
    capsys.readouterr()
    assert await cli(["audit", "-c", str(config), "verify"]) == 1
    assert "row 3 " in capsys.readouterr().err


async def test_cli_orgs_users_and_keys_are_audited(tmp_path: Path, monkeypatch, capsys) -> None:
    import io

    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    c = ["-c", str(config)]
    assert await cli(["orgs", *c, "create", "acme"]) == 0
    assert await cli(["orgs", *c, "create", "acme"]) == 2
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert await cli(["users", *c, "create", "--org", "acme", "--email", "Ann@Example.com", "--role", "owner"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert await cli(["users", *c, "create", "--org", "acme", "--email", "b@example.com", "--role", "viewer"]) == 2
    assert await cli(["users", *c, "create", "--org", "nope", "--email", "c@example.com", "--role", "viewer"]) == 2
    assert await cli(["keys", *c, "create", "--org", "acme", "--name", "k", "--scope", "calls:read"]) == 0
    capsys.readouterr()
    assert await cli(["users", *c, "list"]) == 0
    out = capsys.readouterr().out
    assert "ann@example.com" in out and '"role": "owner"' in out and '"org": "acme"' in out
    assert await cli(["audit", *c, "export", "--org", "acme"]) == 0
    actions = [line for line in capsys.readouterr().out.splitlines() if line]
    assert [__import__("json").loads(x)["action"] for x in actions] == ["org_create", "user_create", "create_key"]
    assert "a long password" not in (tmp_path / "state" / "voxd.db").read_bytes().decode("latin-1")


async def test_cli_reset_totp_removes_a_lost_second_factor(tmp_path: Path, monkeypatch, capsys) -> None:
    import io

    from voxd.core.sealing import Sealer
    from voxd.store.db import Database

    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    c = ["-c", str(config)]
    assert await cli(["orgs", *c, "create", "acme"]) == 0
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert await cli(["users", *c, "create", "--org", "acme", "--email", "ann@example.com", "--role", "owner"]) == 0
    db = await Database.open(tmp_path / "state" / "voxd.db")
    try:
        user = await db.users().by_email("ann@example.com")
        assert user is not None
        totp = db.totp(Sealer.load(tmp_path / "state"))
        await totp.enroll(user.id, user.email)
        async with db.transaction() as conn:
            await conn.execute("UPDATE user_totp SET confirmed_at = 1")
        assert await totp.enabled(user.id)
    finally:
        await db.close()
    capsys.readouterr()
    assert await cli(["users", *c, "reset-totp", "--email", "ann@example.com"]) == 0
    assert "removed" in capsys.readouterr().out
    assert await cli(["users", *c, "reset-totp", "--email", "nobody@example.com"]) == 2
    db = await Database.open(tmp_path / "state" / "voxd.db")
    try:
        assert not await db.totp(Sealer.load(tmp_path / "state")).enabled(user.id)
        assert "totp_reset" in [r["action"] for r in await db.for_org("acme").audit().export()]
    finally:
        await db.close()


async def test_cli_orgs_export_holds_one_org_and_no_secret(tmp_path: Path, capsys) -> None:
    import json

    from voxd.core.calllog import CallRecord, Turn
    from voxd.store.db import Database

    (tmp_path / "agents" / "acme").mkdir(parents=True)
    (tmp_path / "agents" / "acme" / "desk.yaml").write_text("name: desk\n" + AGENT.format(greeting="Acme here."))
    config = tmp_path / "voxd.yaml"
    config.write_text(f"state_dir: {tmp_path / 'state'}\nagents_dir: {tmp_path / 'agents'}\n")
    c = ["-c", str(config)]
    assert await cli(["orgs", *c, "create", "acme"]) == 0
    assert await cli(["orgs", *c, "create", "other"]) == 0
    db = await Database.open(tmp_path / "state" / "voxd.db")
    try:
        for org in ("acme", "other"):
            scoped = db.for_org(org)
            call = CallRecord(id=f"call-{org}", agent="desk", agent_version="1", transport="sip")
            call.turns.append(Turn(index=0, speaker="caller", text=f"hello from {org}", started_at=0.0))
            await scoped.calls().save(call)
            await scoped.api_keys().create(f"key-{org}", ["calls:read"], created_by="test")
            await scoped.webhooks().create_endpoint(url=f"https://{org}.example/hook", secret="whsec_" + "s" * 32,
                                                    created_by="test", events=["call.ended"],
                                                    headers={"Authorization": "Basic c2VjcmV0"})
    finally:
        await db.close()
    out = tmp_path / "acme.jsonl"
    assert await cli(["orgs", *c, "export", "acme", "--out", str(out)]) == 0
    assert (out.stat().st_mode & 0o777) == 0o600
    text = out.read_text()
    rows = [json.loads(line) for line in text.splitlines()]
    kinds = {r["kind"] for r in rows}
    assert {"org", "agent_file", "api_key", "webhook_endpoint", "call", "audit"} <= kinds
    call = next(r for r in rows if r["kind"] == "call")
    assert call["id"] == "call-acme" and "hello from acme" in json.dumps(call)
    assert "other" not in text.replace('"org_create"', "")  # nothing of the other organisation
    assert "whsec_" not in text and "c2VjcmV0" not in text and "Acme here." in text
    assert await cli(["orgs", *c, "export", "nope"]) == 2
