"""The inbound lookup: before an inbound call is answered, ask the business who is calling.

An agent's ``inbound_lookup`` names a URL; voxd POSTs the caller, the called number,
the transport, the organisation and the agent, signed with Standard Webhooks headers,
through the outbound policy (use ``lookups``: no private address unless a rule allows
it). The JSON answer may carry::

    {"variables": {"name": "Ada"},            # fill the agent's {placeholders}
     "agent": "vip-desk",                      # another agent of the same organisation
     "reject": {"status": 486, "reason": "..."}}   # or true, or a reason string

Answering never waits longer than ``timeout_ms``: on timeout the call goes on with the
agent's defaults (``on_timeout: continue``) or is rejected (``reject``). Any other
failure (refused destination, HTTP error, not JSON, an agent of another organisation)
is logged and the call goes on with the defaults. What happened is kept on the call
record (``metadata.inbound_lookup``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import aiohttp

from voxd.agents.loader import LoadedAgent
from voxd.agents.variables import InboundLookup, coerce
from voxd.core.egress import EgressPolicy, EgressRefused, refusal
from voxd.core.egress_http import egress_session
from voxd.core.secrets import Outbound
from voxd.core.signing import Signer

log = logging.getLogger("voxd.lookup")

USE = "lookups"  # the egress policy's name for these requests (egress.allow[].uses)
MAX_RESPONSE_BYTES = 64 * 1024
REJECT_STATUSES = {403: "Forbidden", 480: "Temporarily Unavailable", 486: "Busy Here", 603: "Decline"}
_REJECT_WORDS = {"forbidden": 403, "unavailable": 480, "busy": 486, "decline": 603, "declined": 603}
DEFAULT_REJECT = 603


@dataclass(frozen=True)
class Rejection:
    """The call is refused before it is answered: SIP answers ``status``; other legs close."""

    status: int
    reason: str


@dataclass
class Outcome:
    agent: LoadedAgent
    variables: dict[str, str] = field(default_factory=dict)
    reject: Rejection | None = None
    info: dict[str, Any] = field(default_factory=dict)  # for the record: result, ms, problems


class _Failed(Exception):
    pass


class InboundLookups:
    """Runs agents' inbound lookups. ``outbound``: the daemon's egress policy and secrets
    (read at each lookup: a reload applies to the next call); ``signer``: the daemon's
    default signer (the one HTTP functions use), for a lookup that names no secret."""

    def __init__(self, outbound: Callable[[], Outbound], signer: Callable[[], Signer] | None = None) -> None:
        self.outbound = outbound
        self.signer = signer
        self._session: aiohttp.ClientSession | None = None
        self._policy: EgressPolicy | None = None
        self._old: list[aiohttp.ClientSession] = []

    async def session(self) -> aiohttp.ClientSession:
        """An HTTP session under the current egress policy (a new one when it changed)."""
        policy = self.outbound().policy
        if self._session is None or self._policy is not policy:
            if self._session is not None:
                self._old.append(self._session)  # lookups in flight keep theirs
            self._session, self._policy = egress_session(policy, USE, limit=50), policy
        return self._session

    async def aclose(self) -> None:
        for s in [*self._old, *([self._session] if self._session is not None else [])]:
            await s.close()
        self._old, self._session = [], None

    async def resolve(self, agent: LoadedAgent, find: Callable[[str], LoadedAgent | None], *, caller: str,
                      called: str, transport: str, org: str = "default",
                      from_uri: str = "", to_uri: str = "") -> Outcome:
        """What the lookup says about this call; never raises, never waits past timeout_ms."""
        spec = agent.config.inbound_lookup
        if spec is None:
            return Outcome(agent)
        t0 = time.perf_counter()
        payload = {"type": "call.lookup", "caller": caller, "called": called, "transport": transport, "org": org,
                   "agent": agent.name, "from_uri": from_uri, "to_uri": to_uri, "timestamp": time.time()}
        out = Outcome(agent, info={"url": spec.url})
        try:
            async with asyncio.timeout(spec.timeout_ms / 1000):
                answer = await self._ask(spec, payload)
        except TimeoutError:
            out.info["result"] = "timeout"
            log.warning("agent %s: inbound lookup timed out after %d ms (%s)", agent.name, spec.timeout_ms,
                        "rejecting" if spec.on_timeout == "reject" else "answering with defaults")
            if spec.on_timeout == "reject":
                out.reject = Rejection(480, "inbound lookup timed out")
        except _Failed as e:
            out.info["result"] = "error"
            out.info["error"] = str(e)
            log.warning("agent %s: inbound lookup failed: %s; answering with defaults", agent.name, e)
        else:
            self._apply(out, answer, find)
        out.info["ms"] = round((time.perf_counter() - t0) * 1000, 1)
        return out

    async def _ask(self, spec: InboundLookup, payload: dict[str, Any]) -> Any:
        body = json.dumps(payload, separators=(",", ":")).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "voxd-lookup/1",
                   **self._signer_for(spec).headers(body)}
        session = await self.session()
        try:
            async with session.post(spec.url, data=body, headers=headers, allow_redirects=False) as resp:
                raw = await resp.content.read(MAX_RESPONSE_BYTES + 1)
                status = resp.status
        except EgressRefused as e:
            raise _Failed(f"destination refused: {e}") from None
        except (aiohttp.ClientError, OSError) as e:
            why = refusal(e)
            if why is not None:
                raise _Failed(f"destination refused: {why}") from None
            raise _Failed(f"could not reach the lookup ({type(e).__name__})") from None
        if len(raw) > MAX_RESPONSE_BYTES:
            raise _Failed(f"the answer was larger than {MAX_RESPONSE_BYTES} bytes")
        if not 200 <= status < 300:
            raise _Failed(f"the lookup answered HTTP {status}")
        if not raw.strip():
            return {}
        try:
            return json.loads(raw)
        except (ValueError, UnicodeDecodeError):
            raise _Failed("the answer is not JSON") from None

    def _signer_for(self, spec: InboundLookup) -> Signer:
        if spec.secret:
            book = self.outbound().secrets
            why = book.problem(spec.secret, spec.url)
            declared = book.get(spec.secret)
            value = declared.read() if declared is not None and why is None else None
            if not value:
                raise _Failed(f"inbound_lookup.secret: {why or f'secret {spec.secret} is not set'}")
            return Signer(value)
        if self.signer is None:
            raise _Failed("no signing secret for the lookup (inbound_lookup.secret, or tools.signing_secret_env)")
        return self.signer()

    @staticmethod
    def _apply(out: Outcome, answer: Any, find: Callable[[str], LoadedAgent | None]) -> None:
        if not isinstance(answer, dict):
            out.info["result"] = "error"
            out.info["error"] = "the answer is not a JSON object"
            log.warning("agent %s: inbound lookup answer is not a JSON object; answering with defaults",
                        out.agent.name)
            return
        out.info["result"] = "ok"
        problems: list[str] = []
        out.variables, problems = coerce(answer.get("variables"))
        other = answer.get("agent")
        if isinstance(other, str) and other and other != out.agent.name:
            found = find(other) if "/" not in other else None
            if found is None:
                problems.append(f"agent {other[:64]!r} is not an agent of this organisation: kept {out.agent.name}")
            else:
                out.info["agent_from"] = out.agent.name
                out.agent = found
        elif other is not None and not isinstance(other, str):
            problems.append("agent is not a name")
        reject = answer.get("reject")
        if reject:
            out.reject = _rejection(reject)
            out.info["result"] = "rejected"
            out.info["reject"] = {"status": out.reject.status, "reason": out.reject.reason}
        if problems:
            out.info["problems"] = problems
            log.warning("agent %s: inbound lookup answer: %s", out.agent.name, "; ".join(problems))


def _rejection(value: Any) -> Rejection:
    status, reason = DEFAULT_REJECT, "rejected by the inbound lookup"
    if isinstance(value, str):
        reason = value
        status = _REJECT_WORDS.get(value.lower().strip(), DEFAULT_REJECT)
    elif isinstance(value, dict):
        got = value.get("status")
        if isinstance(got, int) and got in REJECT_STATUSES:
            status = got
        elif isinstance(got, str) and got.lower() in _REJECT_WORDS:
            status = _REJECT_WORDS[got.lower()]
        if isinstance(value.get("reason"), str) and value["reason"]:
            reason = value["reason"]
    return Rejection(status, reason[:200])
