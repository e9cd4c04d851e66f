"""Validation of what an agent would send out, against the daemon's rules (``Outbound``:
the egress policy and the declared secrets), so that ``voxd check``, the control API and
live reload refuse it with file, line and field instead of a failure at call time.

The loader passes the rules in pydantic's validation context under ``OUTBOUND``; without
them (a config built in code) only the run-time checks apply.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError, ValidationInfo
from pydantic_core import InitErrorDetails, PydanticCustomError

from voxd.core.secrets import SECRET_REF, Outbound, host_of

OUTBOUND = "outbound"  # validation context key: the daemon's voxd.core.secrets.Outbound
Problems = list[tuple[tuple[str | int, ...], str, Any]]  # (field location, message, value)


def context_outbound(info: ValidationInfo) -> Outbound | None:
    """The daemon's egress policy and declared secrets, when the loader passed them."""
    ctx = info.context if isinstance(info.context, dict) else {}
    out = ctx.get(OUTBOUND)
    return out if isinstance(out, Outbound) else None


def raise_problems(model: str, problems: Problems) -> None:
    """A ValidationError naming fields of the model, so the loader can point at their lines."""
    if problems:
        raise ValidationError.from_exception_data(model, [
            InitErrorDetails(type=PydanticCustomError("voxd", msg), loc=loc, input=value)
            for loc, msg, value in problems
        ])


def engine_problems(cfg: Any, out: Outbound) -> Problems:
    """A hosted engine block (``voxd.agents.schema._Cloud``): its base_url and its key."""
    book = out.secrets
    problems: Problems = []
    url = cfg.endpoint()
    if cfg.base_url:
        why = out.policy.url_problem(cfg.base_url, "providers")
        if why:
            problems.append((("base_url",), f"outbound requests there are refused: {why}", cfg.base_url))
    if cfg.api_key_secret and book.get(cfg.api_key_secret) is None:
        problems.append((("api_key_secret",), book.problem(cfg.api_key_secret, url or "") or "", cfg.api_key_secret))
    for fld, value, kind in (("api_key_env", cfg.api_key_env, "env"), ("api_key_file", cfg.api_key_file, "file")):
        if value and not cfg.api_key_secret and cfg.named_secret(book) is None:
            hint = f"{{{kind}: {value}, hosts: [{(host_of(url) if url else '') or '<host>'}]}}"
            problems.append(((fld,), f"an agent may not name a {'variable' if kind == 'env' else 'file'} of the "
                             f"daemon's; declare it in voxd.yaml as secrets: {{<name>: {hint}}} and write "
                             "api_key_secret: <name> (docs/cloud-providers.md)", value))
    name = cfg.named_secret(book)
    if not problems and name and url and book.get(name) is not None:
        why = book.problem(name, url)
        if why:
            problems.append((("base_url",) if cfg.base_url else ("api_key_secret",), why, url))
    return problems


def http_function_problems(fn: Any, out: Outbound) -> Problems:
    """An HTTP function (``voxd.agents.schema.HttpFunction``): its URL and the secrets its
    headers and signing name."""
    book = out.secrets
    problems: Problems = []
    why = out.policy.url_problem(fn.url, "functions")
    if why:
        problems.append((("url",), f"outbound requests there are refused: {why}", fn.url))
    for key, value in fn.headers.items():
        for m in SECRET_REF.finditer(value):
            why = book.ref_problem(m.group(1), fn.url)
            if why:
                problems.append((("headers", key), why, "${" + m.group(1) + "}"))
    if fn.secret_env:
        why = book.ref_problem(fn.secret_env, fn.url)
        if why:
            problems.append((("secret_env",), why, fn.secret_env))
    return problems


def lookup_problems(spec: Any, out: Outbound) -> Problems:
    """An agent's inbound_lookup (``voxd.agents.variables.InboundLookup``): its URL (use
    ``lookups``) and the declared secret that signs it."""
    problems: Problems = []
    why = out.policy.url_problem(spec.url, "lookups")
    if why:
        problems.append((("url",), f"outbound requests there are refused: {why}", spec.url))
    if spec.secret:
        why = out.secrets.problem(spec.secret, spec.url)
        if why:
            problems.append((("secret",), why, spec.secret))
    return problems
