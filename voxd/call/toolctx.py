"""The session's side of function calling: which tools an agent sees, how they run,
and the call-control abilities (`ToolContext`) tools are given."""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from voxd.agents.schema import AgentConfig
from voxd.call.events import ToolExecuted
from voxd.call.ports import TransferOutcome
from voxd.core.calllog import CallRecord, ToolCallRecord
from voxd.core.redact import default_redactor
from voxd.providers.base import ToolCall, ToolSpec
from voxd.tools.registry import ToolRegistry, ToolResult

log = logging.getLogger("voxd.call")

OPEN_MENU = "open_keypad_menu"
# functions a leg cannot carry out, by `CallControl.transport_name`: they are not offered to
# the LLM there. Twilio Media Streams can neither redirect the call nor send digits (a
# Twilio leg with the auth token set transfers through the REST API: it says so in cannot_do).
LEG_CANNOT: dict[str, frozenset[str]] = {
    "twilio": frozenset({"transfer_call", "send_dtmf"}),
}


def tools_for_leg(names: list[str], transport: str, cannot: frozenset[str] | None = None) -> list[str]:
    """The agent's functions this leg can carry out. ``cannot``: what the leg itself says it
    cannot do (``CallControl.cannot_do``, optional), else the table above."""
    if cannot is None:
        cannot = LEG_CANNOT.get(transport, frozenset())
    return [n for n in names if n not in cannot]


class CallActions(Protocol):
    """The call-control abilities tools reach (a transport's ``CallControl`` has them)."""

    transport_name: str  # which functions the leg can carry out (tools_for_leg)

    async def transfer(self, target: str) -> bool: ...

    async def send_dtmf(self, digits: str) -> None: ...


class ToolHost(Protocol):
    """All that ``SessionTools`` uses of its call. ``CallSession`` satisfies it as it is;
    a test (or another kind of session) can host tools with nothing more."""

    @property
    def agent(self) -> AgentConfig:
        """Which tools the agent allows, their options, its timezone and keypad menus."""
        ...

    @property
    def record(self) -> CallRecord:
        """The call's record (its id; a tool run is reported against it)."""
        ...

    @property
    def control(self) -> CallActions: ...

    def request_hangup(self, reason: str) -> None:
        """Hang up once the current reply has been said."""
        ...

    def open_menu_after_reply(self, name: str) -> None: ...

    async def say_now(self, text: str) -> None: ...

    def emit_tool(self, event: ToolExecuted) -> None:
        """Report a finished tool run (call log, webhooks, the function log)."""
        ...


class SessionTools:
    """Implements `voxd.tools.registry.ToolContext` for one call."""

    def __init__(self, session: ToolHost, registry: ToolRegistry) -> None:
        self.session = session
        self.registry = registry
        control = session.control
        self.allowed = tools_for_leg(list(session.agent.tool_names), control.transport_name,
                                     getattr(control, "cannot_do", None))

    # ToolContext
    @property
    def call_id(self) -> str:
        return self.session.record.id

    @property
    def timezone(self) -> str:
        return self.session.agent.timezone

    @property
    def variables(self) -> dict[str, str]:
        return self.session.record.variables

    def options_for(self, tool: str) -> dict[str, Any]:
        return self.session.agent.tool_options(tool)

    async def end_call(self, reason: str) -> None:
        self.session.request_hangup(reason)

    async def transfer_call(self, target: str) -> bool:
        return await self.session.control.transfer(target)

    async def send_dtmf(self, digits: str) -> None:
        await self.session.control.send_dtmf(digits)

    async def attended_transfer(self, target: str, summary: str) -> TransferOutcome:
        """Warm transfer through the leg (``CallLeg.attended_transfer``), where it can."""
        carry = getattr(self.session.control, "attended_transfer", None)
        if carry is None:
            return TransferOutcome(False, f"attended transfer is not available on a "
                                          f"{self.session.control.transport_name} call")
        outcome: TransferOutcome = await carry(target, summary)
        return outcome

    def interruptible(self, name: str) -> bool:
        tool = self.registry.get(name)
        return tool.interruptible if tool is not None else True

    # what the LLM sees
    def specs(self) -> list[ToolSpec]:
        return agent_specs(self.session.agent, self.registry, self.allowed)

    async def run(self, call: ToolCall) -> ToolResult:
        return await self.run_named(call.name, call.arguments, call.id)

    async def run_named(self, name: str, arguments: dict[str, Any], call_id: str = "",
                        masked: tuple[str, ...] = ()) -> ToolResult:
        """Run a function; the arguments named in `masked` are recorded as '***' (secure digits)."""
        if name == OPEN_MENU:
            res = self._open_menu(arguments)
        else:
            res = await self.registry.execute(name, arguments, self, allowed=self.allowed)
        self.session.emit_tool(
            ToolExecuted(
                self.session.record,
                ToolCallRecord(
                    name=res.name, arguments=default_redactor({k: "***" if k in masked else v
                                                               for k, v in res.arguments.items()}),
                    result=res.result, error=res.error,
                    started_at=time.time() - res.duration_ms / 1000,
                    duration_ms=round(res.duration_ms, 2), call_id=call_id,
                ),
            )
        )
        return res

    def _open_menu(self, arguments: dict[str, Any]) -> ToolResult:
        res = ToolResult(OPEN_MENU, arguments)
        menu = arguments.get("menu")
        if menu not in self.session.agent.dtmf.menus:
            res.error = f"no keypad menu named {menu!r}"
            return res
        self.session.open_menu_after_reply(str(menu))
        res.result = {"opened": menu, "note": "the menu prompt will be read next; say nothing more"}
        return res

    async def transfer(self, target: str, *, attended: bool = False, summary: str = "") -> bool:
        ok = False
        try:
            if attended:
                ok = (await self.attended_transfer(target, summary)).ok
            else:
                ok = await self.session.control.transfer(target)
        except Exception:
            log.exception("transfer to %s failed", target)
            ok = False
        if not ok:
            await self.session.say_now("Sorry, I couldn't transfer you right now.")
        return ok


def agent_specs(agent: AgentConfig, registry: ToolRegistry, names: list[str] | None = None) -> list[ToolSpec]:
    """The functions an agent's LLM is offered: its tools (those of `names`, what this call's
    leg can do), plus the keypad-menu opener when it has menus (also used to warm a local
    model's prompt before calls)."""
    specs = registry.specs(list(agent.tool_names) if names is None else names)
    menus = sorted(agent.dtmf.menus)
    if menus:
        specs.append(
            ToolSpec(
                OPEN_MENU,
                "Offer the caller a keypad menu; the menu prompt is read to them.",
                {
                    "type": "object",
                    "properties": {"menu": {"type": "string", "enum": menus}},
                    "required": ["menu"],
                    "additionalProperties": False,
                },
            )
        )
    return specs
