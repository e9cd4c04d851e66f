"""Per-call variables: what an agent declares, the inbound lookup that can supply them,
and the bounds every source of values (API, lookup) is held to.

An agent declares its variables with defaults::

    variables:
      name: {default: there, description: The caller's first name}
      order_id: ""            # shorthand: just the default

and writes ``{name}`` in its greeting, prompt, dialog replies, menus and function
templates (``voxd.agents.templates`` checks them at load time and fills them per call).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from voxd.agents.outbound_checks import context_outbound, lookup_problems, raise_problems

MAX_VARIABLES = 64  # per call
MAX_VALUE_CHARS = 1024
VARIABLE_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,63}$"
_NAME = re.compile(VARIABLE_NAME)


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class VariableDef(_Model):
    """One variable of the agent: ``{name}`` in its texts; the default is used when a call
    brings no value for it (API, inbound lookup)."""

    default: str = Field("", max_length=MAX_VALUE_CHARS, description="Value when the call brings none.")
    description: str = Field("", max_length=500, description="What the value is (for people, not the model).")


class InboundLookup(_Model):
    """Asked before an inbound call is answered (SIP: before the 200 OK; websocket and
    WebRTC legs: at stream start): a signed POST with the caller, the called number, the
    transport, the organisation and the agent. The JSON answer may hold ``variables``, an
    ``agent`` (of the same organisation) to take the call instead, or ``reject``."""

    url: str = Field(..., pattern=r"^https?://\S+$", max_length=2048, description="Where the lookup is POSTed.")
    timeout_ms: int = Field(
        1000, ge=50, le=10_000,
        description="No answer within this time: the call goes on with the agent's defaults (or is rejected, "
        "see on_timeout); answering never waits longer.")
    on_timeout: Literal["continue", "reject"] = Field(
        "continue", description="'continue': answer with the defaults; 'reject': refuse the call (SIP 480).")
    secret: str | None = Field(
        None, pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$",
        description="Declared secret (voxd.yaml secrets:) holding the whsec_ key that signs the request "
        "(Standard Webhooks headers); default: the daemon's function signing secret.")

    @model_validator(mode="after")
    def _destination(self, info: ValidationInfo) -> InboundLookup:
        out = context_outbound(info)  # without it: refused at call time all the same
        if out is not None:
            raise_problems("InboundLookup", lookup_problems(self, out))
        return self


def declared(value: Any) -> Any:
    """``name: text`` is short for ``name: {default: text}``."""
    if isinstance(value, Mapping):
        return {str(k): ({"default": v} if isinstance(v, str | int | float) and not isinstance(v, bool) else v)
                for k, v in value.items()}
    return value


def check_names(value: dict[str, Any]) -> dict[str, Any]:
    if len(value) > MAX_VARIABLES:
        raise ValueError(f"at most {MAX_VARIABLES} variables")
    for name in value:
        if not _NAME.match(name):
            raise ValueError(f"variable name {name!r} must be letters, digits and _ (not starting with a digit), "
                             "at most 64 characters")
    return value


class Variables(BaseModel):
    """Values one call brings (API ``variables``, a lookup's answer), bounded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    values: dict[str, str] = Field(default_factory=dict)

    @field_validator("values")
    @classmethod
    def _bounded(cls, v: dict[str, str]) -> dict[str, str]:
        check_names(v)
        for name, text in v.items():
            if len(text) > MAX_VALUE_CHARS:
                raise ValueError(f"variable {name!r} is longer than {MAX_VALUE_CHARS} characters")
        return v


def coerce(raw: Any) -> tuple[dict[str, str], list[str]]:
    """Values from an untrusted JSON object: strings as they are, numbers and booleans as
    text; anything else, a bad name or an overlong value is dropped with a problem."""
    if not isinstance(raw, Mapping):
        return {}, [] if raw is None else ["variables is not an object"]
    out: dict[str, str] = {}
    problems: list[str] = []
    for name, value in raw.items():
        if len(out) >= MAX_VARIABLES:
            problems.append(f"more than {MAX_VARIABLES} variables: the rest dropped")
            break
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"variable name {str(name)[:70]!r} is not a name")
            continue
        if isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, str | int | float):
            text = str(value)
        else:
            problems.append(f"variable {name!r} is not text or a number")
            continue
        if len(text) > MAX_VALUE_CHARS:
            problems.append(f"variable {name!r} is longer than {MAX_VALUE_CHARS} characters")
            continue
        out[name] = text
    return out, problems


def call_values(declared_vars: Mapping[str, VariableDef], given: Mapping[str, str] | None) -> dict[str, str]:
    """One call's variables: each declared default, overridden by the values the call
    brought (values for names the agent does not declare are kept for the record and webhooks)."""
    values = {name: d.default for name, d in declared_vars.items()}
    values.update(given or {})
    return values
