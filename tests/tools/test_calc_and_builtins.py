from __future__ import annotations

from typing import Any

import pytest

from voxd.call.ports import TransferOutcome
from voxd.tools.builtins import default_registry
from voxd.tools.calc import CalcError, evaluate


@pytest.mark.parametrize(
    ("expr", "value"),
    [("12 * 7", 84), ("2 ^ 10", 1024), ("sqrt(81) + 1", 10), ("7 / 2", 3.5), ("-(3 - 5) * 2", 4), ("10 % 3", 1),
     ("1,000 + 1", 1001), ("12 × 3", 36), ("round(3.14159, 2)", 3.14)],
)
def test_arithmetic(expr: str, value: float) -> None:
    assert evaluate(expr) == value


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("9**9**9", "exponent"),
        ("10 ** 500", "too large"),
        ("(" * 40 + "1" + ")" * 40, "nested"),
        ("__import__('os')", "unsupported"),
        ("open", "unknown name"),
        ("(1).real", "unsupported"),
        ("1/0", "division by zero"),
        ("", "empty"),
        ("1 +", "cannot parse"),
        ("x" * 300, "longer than"),
        ("'a' * 3", "only numbers"),
        ("[1, 2]", "unsupported"),
        ("lambda: 1", "unsupported"),
    ],
)
def test_hostile_input_gives_clear_error(expr: str, message: str) -> None:
    with pytest.raises(CalcError, match=message):
        evaluate(expr)


class Ctx:
    call_id = "c"
    timezone = "America/New_York"
    ended: str | None = None

    def options_for(self, tool: str) -> dict[str, Any]:
        return {"allowed": ["sip:ok@x"]} if tool == "transfer_call" else {}

    async def end_call(self, reason: str) -> None:
        self.ended = reason

    async def transfer_call(self, target: str) -> bool:
        return True

    async def send_dtmf(self, digits: str) -> None:
        pass


async def test_registry_validates_and_reports_errors_as_results() -> None:
    reg = default_registry()
    ctx = Ctx()
    ok = await reg.execute("calculate", {"expression": "6*7"}, ctx)
    assert ok.result == 42 and ok.error is None
    bad = await reg.execute("calculate", {"expression": 5}, ctx)
    assert bad.error and "expression" in bad.error
    hostile = await reg.execute("calculate", {"expression": "9**9**9"}, ctx)
    assert hostile.error == "exponent larger than 1000"
    t = await reg.execute("get_current_time", {}, ctx)
    assert t.result["timezone"] == "America/New_York" and t.result["spoken"].endswith(("AM", "PM"))
    tz = await reg.execute("get_current_time", {"timezone": "Mars/Base"}, ctx)
    assert tz.error and "unknown time zone" in tz.error
    denied = await reg.execute("transfer_call", {"target": "sip:evil@x"}, ctx)
    assert denied.error and "not allowed" in denied.error
    not_allowed = await reg.execute("end_call", {}, ctx, allowed=["calculate"])
    assert not_allowed.error and "not available" in not_allowed.error and ctx.ended is None
    await reg.execute("end_call", {"reason": "done"}, ctx)
    assert ctx.ended == "done"


class WarmCtx(Ctx):
    """A call whose leg can do attended transfers: the target named answers or not."""

    def __init__(self, answers: bool) -> None:
        self.answers = answers
        self.asked: list[tuple[str, str]] = []

    async def attended_transfer(self, target: str, summary: str) -> TransferOutcome:
        self.asked.append((target, summary))
        return TransferOutcome(True) if self.answers else TransferOutcome(False, "the target did not answer within 30 s")


async def test_transfer_call_attended_mode() -> None:
    reg = default_registry()
    ok_ctx = WarmCtx(answers=True)
    done = await reg.execute("transfer_call", {"target": "sip:ok@x", "mode": "attended", "summary": "Invoice 12."},
                             ok_ctx)
    assert done.result == {"transferred": True, "mode": "attended"} and ok_ctx.asked == [("sip:ok@x", "Invoice 12.")]
    no = await reg.execute("transfer_call", {"target": "sip:ok@x", "mode": "attended"}, WarmCtx(answers=False))
    assert no.result["transferred"] is False and "did not answer" in no.result["reason"]
    # a leg without attended transfer says so; the blind mode is what it was
    plain = await reg.execute("transfer_call", {"target": "sip:ok@x", "mode": "attended"}, Ctx())
    assert plain.error == "attended transfer is not available on this call"
    assert (await reg.execute("transfer_call", {"target": "sip:ok@x", "mode": "blind"}, Ctx())).result == {
        "transferred": True}
    bad = await reg.execute("transfer_call", {"target": "sip:ok@x", "mode": "warm"}, Ctx())
    assert bad.error and "mode" in bad.error
    refused = await reg.execute("transfer_call", {"target": "sip:evil@x", "mode": "attended"}, WarmCtx(answers=True))
    assert refused.error and "not allowed" in refused.error
