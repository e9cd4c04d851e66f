"""The outcome of scenarios and their steps, as reports print and store them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from voxd.suites.expect import Window
from voxd.suites.judge import Verdict

Status = Literal["passed", "failed", "skipped", "error", "xfailed", "xpassed"]


@dataclass
class StepResult:
    index: int
    action: str
    said: str | None
    line: int | None
    window: Window = field(default_factory=Window)
    failures: list[str] = field(default_factory=list)
    verdict: Verdict | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "action": self.action, "said": self.said, "line": self.line,
                "failures": self.failures, "judge": self.verdict.to_dict() if self.verdict else None,
                **self.window.to_dict()}


@dataclass
class ScenarioResult:
    suite: str
    agent: str
    name: str
    mode: str
    line: int | None = None
    tags: list[str] = field(default_factory=list)
    status: Status = "passed"
    note: str = ""  # why skipped, or the error
    steps: list[StepResult] = field(default_factory=list)
    transcript: list[str] = field(default_factory=list)
    verdict: Verdict | None = None
    xfail: str | None = None  # a known defect: failing is expected
    seconds: float = 0.0
    call_seconds: float = 0.0  # media time of the call (audio mode)

    @property
    def failures(self) -> list[str]:
        out = [f"step {s.index + 1} ({s.action}"
               + (f" {s.said!r}" if s.said else "") + f", line {s.line}): {f}" if s.line else
               f"step {s.index + 1} ({s.action}): {f}" for s in self.steps for f in s.failures]
        if self.verdict is not None and self.verdict.failed:
            out.append(f"judge: {self.verdict.statement!r}: {self.verdict.verdict}: {self.verdict.reason}")
        return out

    def settle(self) -> None:
        """Set the status from the steps (unless skipped or errored)."""
        if self.status in ("skipped", "error"):
            return
        self.status = "failed" if self.failures else "passed"
        if self.xfail:
            self.status = "xfailed" if self.status == "failed" else "xpassed"
            self.note = (f"known defect: {self.xfail}" if self.status == "xfailed"
                         else f"passes now: remove xfail ({self.xfail})")

    @property
    def judge_notes(self) -> list[str]:
        vs = [s.verdict for s in self.steps if s.verdict is not None] + ([self.verdict] if self.verdict else [])
        return [f"judge skipped: {v.reason}" for v in vs if v.verdict == "skipped"]

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "agent": self.agent, "scenario": self.name, "mode": self.mode,
                "line": self.line, "tags": self.tags, "status": self.status, "note": self.note, "xfail": self.xfail,
                "failures": self.failures, "seconds": round(self.seconds, 2),
                "call_seconds": round(self.call_seconds, 2), "transcript": self.transcript,
                "judge": self.verdict.to_dict() if self.verdict else None,
                "steps": [s.to_dict() for s in self.steps]}


def transcript_of(turns: list[Any]) -> list[str]:
    """Transcript lines of a record's turns (with tool calls), for reports and the judge."""
    import json

    lines: list[str] = []
    for t in turns:
        who = "caller" if t.speaker == "caller" else "agent"
        text = t.text
        if t.interrupted:
            text = f"{t.heard_text or ''} [cut short by the caller; planned: {t.text}]"
        lines.append(f"{who}: {text}")
        for tc in t.tool_calls:
            res = f"error: {tc.error}" if tc.error else json.dumps(tc.result, default=str)
            lines.append(f"  (function {tc.name}({json.dumps(tc.arguments, default=str)}) -> {res})")
    return lines
