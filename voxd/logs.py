"""Logging set-up: readable lines on a terminal, JSON lines otherwise (journald, files).

Every line logged while handling a call carries its call id (a context variable the
call session sets on its tasks), and anything that looks like a secret is masked
before it is written: API keys, webhook secrets, bearer tokens, passwords.
"""

from __future__ import annotations

import contextvars
import json
import logging
import re
import sys
import time
from typing import Any, Protocol

call_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("voxd_call_id", default="")

_SECRETS = [
    (re.compile(r"\bvx_(live|test)_[A-Za-z0-9]{8,}"), r"vx_\1_***"),
    (re.compile(r"\bwhsec_[A-Za-z0-9+/=]{8,}"), "whsec_***"),
    (re.compile(r"\bsk-[A-Za-z0-9_-]{8,}"), "sk-***"),
    (re.compile(r"(?i)\b(bearer|token|basic)\s+[A-Za-z0-9._~+/=-]{8,}"), r"\1 ***"),
    (re.compile(r"(?i)\b(password|passwd|secret|api[_-]?key|authorization)(\"?\s*[:=]\s*\"?)[^\s\",}]+"), r"\1\2***"),
]


class PersonalData(Protocol):
    """What masks personal data (``voxd.core.pii.PiiRedactor``; this module imports nothing of voxd)."""

    def text(self, s: str) -> str: ...

    def value(self, v: Any, keep: frozenset[str] = ...) -> Any: ...


# personal data (cards, SSNs, emails, phone numbers, organisations' patterns) in log lines:
# the daemon sets it at start and on reload, unless redaction.enabled is false
_pii: PersonalData | None = None


def set_log_redaction(redactor: PersonalData | None) -> None:
    global _pii
    _pii = redactor


def redact(text: str) -> str:
    for pattern, repl in _SECRETS:
        text = pattern.sub(repl, text)
    return _pii.text(text) if _pii is not None else text


class ContextFilter(logging.Filter):
    """Adds `call_id` to every record and masks secrets and personal data in the message."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not getattr(record, "call_id", ""):
            record.call_id = call_id_var.get()
        msg = record.getMessage()
        clean = redact(msg)
        if clean != msg:
            record.msg, record.args = clean, None
        return True


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out = {
            "ts": round(record.created, 3),
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
        }
        call_id = getattr(record, "call_id", "")
        if call_id:
            out["call_id"] = call_id
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out["fields"] = _pii.value(fields) if _pii is not None else fields
        if record.exc_info:
            out["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        call_id = getattr(record, "call_id", "")
        return f"{line} [{call_id}]" if call_id else line


def setup_logging(level: str = "INFO", per_module: dict[str, str] | None = None, json_lines: bool | None = None) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if json_lines is None:
        json_lines = not sys.stderr.isatty()
    handler.setFormatter(JsonFormatter() if json_lines else TextFormatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s"))
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for name, lvl in (per_module or {}).items():
        logging.getLogger(name).setLevel(lvl.upper())
    for noisy in ("faster_whisper", "aiohttp.access", "asyncio"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
