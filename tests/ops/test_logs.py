from __future__ import annotations

import io
import json
import logging

from voxd.logs import ContextFilter, JsonFormatter, call_id_var, redact


def test_secrets_are_masked() -> None:
    text = ("key vx_live_aUWOcJAeEP06TYDusIYawcTtib1m6APp1N7SDq secret whsec_c2VjcmV0c2VjcmV0 "
            "Authorization: Bearer abcdefghijklmnop password=hunter22 sk-proj-abcdefghijkl")
    out = redact(text)
    for secret in ("aUWOcJAe", "c2VjcmV0", "abcdefghijklmnop", "hunter22", "proj-abcdefghijkl"):
        assert secret not in out
    assert "vx_live_***" in out


def test_json_lines_carry_the_call_id_and_no_secret() -> None:
    buf = io.StringIO()
    handler = logging.StreamHandler(buf)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(ContextFilter())
    log = logging.getLogger("voxd.test.logs")
    log.addHandler(handler)
    log.propagate = False
    token = call_id_var.set("call_123")
    try:
        log.warning("provider said %s", "api_key=sk-live-1234567890")
    finally:
        call_id_var.reset(token)
        log.removeHandler(handler)
    line = json.loads(buf.getvalue())
    assert line["call_id"] == "call_123" and "1234567890" not in line["msg"]
