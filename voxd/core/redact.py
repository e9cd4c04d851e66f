"""Keeping secrets out of the execution log: by key name, and by value.

Keys that look like credentials (password, token, secret, api_key, authorization...)
have their values replaced. Values of environment variables that custom functions
expanded into headers are remembered here and replaced wherever they appear
(a server echoing a token back in its response, an error message).
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "[redacted]"
SECRET_KEY = re.compile(
    r"(?:^|[_\-.\s])(?:password|passwd|passphrase|pass|secret|token|api[_\-]?key|apikey|"
    r"authorization|auth|cookie|credentials?|private[_\-]?key|access[_\-]?key|signature|"
    r"pin|cvv|ssn)(?:$|[_\-.\s])",
    re.IGNORECASE,
)
_MIN_VALUE_LEN = 4  # shorter values would redact ordinary words


class Redactor:
    def __init__(self) -> None:
        self._values: set[str] = set()

    def remember(self, value: str) -> None:
        """A secret value to scrub from anything logged from now on."""
        if len(value) >= _MIN_VALUE_LEN:
            self._values.add(value)

    @staticmethod
    def is_secret_key(key: str) -> bool:
        snake = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", key)  # accessToken -> access_Token
        return bool(SECRET_KEY.search(snake))

    def text(self, s: str) -> str:
        for v in sorted(self._values, key=len, reverse=True):
            if v in s:
                s = s.replace(v, REDACTED)
        return s

    def __call__(self, value: Any) -> Any:
        """A copy of ``value`` (JSON-like) with secret keys and known secret values replaced."""
        if isinstance(value, dict):
            return {
                k: REDACTED if isinstance(k, str) and self.is_secret_key(k) and v not in (None, "")
                else self(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self(v) for v in value]
        if isinstance(value, str):
            return self.text(value)
        return value


# The process's redactor: HTTP functions register the env values they expand here.
default_redactor = Redactor()
