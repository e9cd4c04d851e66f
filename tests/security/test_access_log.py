"""The HTTP access log on a real daemon: one structured line per request, the principal
named, credential-like query values and every header value kept out."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import aiohttp
import pytest

from tests.daemons import start_daemon
from voxd.api.access_log import masked_query
from voxd.logs import JsonFormatter


def test_credential_like_query_values_are_masked():
    assert masked_query("limit=5&token=abc&api_key=k&state=s&agent=desk") == \
        "limit=5&token=%2A%2A%2A&api_key=%2A%2A%2A&state=%2A%2A%2A&agent=desk"
    assert masked_query("") == ""


@pytest.mark.timeout(60)
async def test_each_request_is_logged_once_without_secrets(tmp_path: Path, caplog) -> None:
    d = await start_daemon(tmp_path, {})
    try:
        assert d.db is not None
        raw, key = await d.db.api_keys().create("reader", ["calls:read"], created_by="test")
        base = f"http://127.0.0.1:{d.http_port}"
        caplog.set_level(logging.INFO, logger="voxd.access")
        async with aiohttp.ClientSession() as http:
            async with http.get(f"{base}/api/v1/calls?limit=5&token=sekrit-value",
                                headers={"Authorization": f"Bearer {raw}", "User-Agent": "probe/1"}) as r:
                assert r.status in (200, 422)
            async with http.get(f"{base}/api/v1/calls", headers={"Authorization": "Bearer vx_live_wrongwrongwrong"}) as r:
                assert r.status == 401
        records = [r for r in caplog.records if r.name == "voxd.access"]
        assert len(records) == 2
        ok, refused = (r.fields for r in records)  # type: ignore[attr-defined]
        assert ok["method"] == "GET" and ok["path"] == "/api/v1/calls" and ok["actor"] == key.id
        assert ok["org"] == "default" and ok["user_agent"] == "probe/1" and ok["remote"] == "127.0.0.1"
        assert "sekrit" not in ok["query"] and "limit=5" in ok["query"]
        assert refused["status"] == 401 and refused["actor"] == ""
        lines = "\n".join(JsonFormatter().format(r) for r in records)
        assert raw not in lines and "wrongwrong" not in lines and "sekrit" not in lines
        assert json.loads(lines.splitlines()[0])["fields"]["status"] == ok["status"]
    finally:
        await d.stop()
