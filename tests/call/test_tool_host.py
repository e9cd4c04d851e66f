"""SessionTools needs only its narrow ToolHost, not a CallSession."""

from __future__ import annotations

from dataclasses import dataclass, field

from voxd.agents.schema import AgentConfig
from voxd.call.events import ToolExecuted
from voxd.call.toolctx import SessionTools, ToolHost
from voxd.core.calllog import CallRecord
from voxd.providers.base import ToolCall
from voxd.tools.builtins import default_registry


@dataclass
class Actions:
    transfers: list[str] = field(default_factory=list)
    transport_name: str = "sip"

    async def transfer(self, target: str) -> bool:
        self.transfers.append(target)
        return False

    async def send_dtmf(self, digits: str) -> None:
        pass


@dataclass
class Host:
    agent: AgentConfig
    record: CallRecord = field(default_factory=lambda: CallRecord(id="call_host", agent="a", agent_version="1",
                                                                  transport="local"))
    control: Actions = field(default_factory=Actions)
    hung_up: list[str] = field(default_factory=list)
    said: list[str] = field(default_factory=list)
    events: list[ToolExecuted] = field(default_factory=list)
    menus: list[str] = field(default_factory=list)

    def request_hangup(self, reason: str) -> None:
        self.hung_up.append(reason)

    def open_menu_after_reply(self, name: str) -> None:
        self.menus.append(name)

    async def say_now(self, text: str) -> None:
        self.said.append(text)

    def emit_tool(self, event: ToolExecuted) -> None:
        self.events.append(event)


async def test_tools_run_against_a_minimal_host() -> None:
    host = Host(AgentConfig.model_validate({"name": "a", "tools": ["end_call"]}))
    checked: ToolHost = host  # mypy: the dataclass is a ToolHost
    tools = SessionTools(checked, default_registry())
    assert tools.call_id == "call_host"
    res = await tools.run(ToolCall("t1", "end_call", {"reason": "done"}))
    assert res.error is None and host.hung_up == ["done"]
    assert [e.tool.name for e in host.events] == ["end_call"] and host.events[0].record is host.record
    assert not await tools.transfer("sip:desk@example.com")
    assert host.control.transfers == ["sip:desk@example.com"] and host.said
