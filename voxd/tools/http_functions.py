"""Custom HTTP functions: a signed request to the integrator's endpoint per call.

The request body (or query string) is built from the arguments through a small
template, headers may reference the operator's declared secrets as ``${name}`` (each
only for the hosts it is declared for), and every request carries Standard Webhooks
signature headers. Requests go through the outbound policy (``voxd.core.egress``).
Header values are never logged; expanded secrets are handed to the redactor.
"""

from __future__ import annotations

import json
import re
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import quote

import aiohttp

from voxd.agents.schema import HttpFunction
from voxd.core.egress import EgressPolicy, EgressRefused, refusal
from voxd.core.egress_http import redirect_options
from voxd.core.redact import Redactor
from voxd.core.secrets import SECRET_REF, SecretBook
from voxd.core.signing import Signer
from voxd.tools.registry import Tool, ToolContext, ToolError

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_RESPONSE_BYTES = 64 * 1024
MAX_TEXT_CHARS = 4000

SessionGetter = Callable[[], Awaitable[aiohttp.ClientSession]]


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"))


def render(template: Any, args: dict[str, Any]) -> Any:
    """'{x}' alone becomes args['x'] with its type; inside a longer string, its text.
    A placeholder for a missing argument becomes null / empty."""
    if isinstance(template, str):
        whole = _PLACEHOLDER.fullmatch(template)
        if whole:
            return args.get(whole.group(1))
        return _PLACEHOLDER.sub(lambda m: _text(args.get(m.group(1), "")), template)
    if isinstance(template, dict):
        return {k: render(v, args) for k, v in template.items()}
    if isinstance(template, list):
        return [render(v, args) for v in template]
    return template


def render_url(url: str, args: dict[str, Any]) -> str:
    return _PLACEHOLDER.sub(lambda m: quote(_text(args.get(m.group(1), "")), safe=""), url)


def expand_secrets(value: str, book: SecretBook, url: str, redactor: Redactor) -> str:
    """``value`` with each ``${name}`` replaced by that declared secret, which must be
    declared for ``url``'s host."""
    def one(m: re.Match[str]) -> str:
        ref = m.group(1)
        why = book.ref_problem(ref, url)
        if why:
            raise ToolError(why)
        secret = book.resolve_ref(ref)
        got = secret.read() if secret is not None else None
        if got is None:
            raise ToolError(f"secret {ref} is not set ({secret.where() if secret else ref})")
        redactor.remember(got)
        return got

    return SECRET_REF.sub(one, value)


def secret_refs(headers: dict[str, str]) -> list[str]:
    return [m.group(1) for v in headers.values() for m in SECRET_REF.finditer(v)]


class HttpFunctionRunner:
    """Runs one HTTP function definition; the handler of its `Tool`."""

    def __init__(
        self,
        name: str,
        spec: HttpFunction,
        signer: Signer | None,
        session: SessionGetter,
        secrets: SecretBook,
        redactor: Redactor,
        policy: EgressPolicy | None = None,
    ) -> None:
        self.name = name
        self.spec = spec
        self.signer = signer
        self.session = session
        self.secrets = secrets
        self.redactor = redactor
        self.policy = policy or EgressPolicy()

    def build(self, args: dict[str, Any], variables: dict[str, str] | None = None
              ) -> tuple[str, dict[str, str], bytes | None, dict[str, str]]:
        """(url, headers, body, query) for these arguments, signed. The URL and body
        templates may also name the call's ``variables`` (an argument of the same name wins)."""
        spec = self.spec
        values = {**(variables or {}), **args}
        url = render_url(spec.url, values)
        headers = {k: expand_secrets(v, self.secrets, url, self.redactor) for k, v in spec.headers.items()}
        query: dict[str, str] = {}
        body: bytes | None = None
        if spec.body is not None:
            rendered = render(spec.body, values)
            body = rendered.encode() if isinstance(rendered, str) else json.dumps(rendered).encode()
        elif spec.method in ("GET", "DELETE"):
            query = {k: _text(v) for k, v in args.items() if v is not None}
        else:
            body = json.dumps(args).encode()
        if body is not None and not any(k.lower() == "content-type" for k in headers):
            headers["Content-Type"] = "application/json"
        headers.setdefault("User-Agent", "voxd-function/1")
        if self.signer is not None:
            headers.update(self.signer.headers(body or b""))
        return url, headers, body, query

    async def __call__(self, args: dict[str, Any], ctx: ToolContext | None) -> Any:
        url, headers, body, query = self.build(args, getattr(ctx, "variables", None))  # a test's context may have none
        if ctx is not None and ctx.call_id:
            headers.setdefault("X-Voxd-Call-Id", ctx.call_id)
        session = await self.session()
        timeout = aiohttp.ClientTimeout(total=self.spec.timeout_s)
        # a header carrying a secret never follows a redirect: the secret is bound to this host
        follow = {"allow_redirects": False} if secret_refs(self.spec.headers) else redirect_options(self.policy)
        try:
            async with session.request(
                self.spec.method, url, headers=headers, data=body, params=query or None,
                timeout=timeout, **follow,
            ) as resp:
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
                ctype = resp.headers.get("Content-Type", "")
        except EgressRefused as e:
            raise ToolError(f"{self.name}: destination refused: {e}") from None
        except aiohttp.ClientError as e:
            why = refusal(e)
            if why is not None:
                raise ToolError(f"{self.name}: destination refused: {why}") from None
            raise ToolError(f"{self.name}: could not reach the service ({type(e).__name__})") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise ToolError(f"{self.name}: the response was larger than {MAX_RESPONSE_BYTES} bytes")
        text = self.redactor.text(raw.decode("utf-8", "replace"))
        if status >= 400:
            raise ToolError(f"{self.name}: the service answered HTTP {status}: {text[:200]}")
        if "json" in ctype or text[:1] in "{[":
            try:
                return self.redactor(json.loads(text)) if text else None
            except ValueError:
                pass
        return text[:MAX_TEXT_CHARS]


def http_tool(
    name: str,
    description: str,
    parameters: dict[str, Any],
    spec: HttpFunction,
    *,
    signer: Signer | None,
    session: SessionGetter,
    secrets: SecretBook,
    redactor: Redactor,
    policy: EgressPolicy | None = None,
    timeout_s: float | None = None,
    interruptible: bool = True,
) -> Tool:
    runner = HttpFunctionRunner(name, spec, signer, session, secrets, redactor, policy)
    return Tool(
        name, description, parameters, runner,
        timeout_s=timeout_s or spec.timeout_s + 1, interruptible=interruptible, builtin=False,
    )
