"""`judge:` expectations: a statement about the conversation, answered by an LLM.

The judge is the suite's `judge_llm:` block, else the agent's own LLM when it is a hosted
one (not the offline dialog engine or packaged local model). Without one, judged expectations are skipped with a
note saying so; they never pass silently.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from voxd.agents.loader import LoadedAgent
from voxd.agents.schema import LLMConfig
from voxd.core.secrets import Outbound
from voxd.providers.base import LanguageModel, Message, ProviderError, TextDelta
from voxd.providers.llm.factory import make_llm

NO_JUDGE = ("no judge LLM is configured (the agent's llm is an offline engine): "
            "set judge_llm: in the suite to judge this")

INSTRUCTIONS = """You grade a phone conversation between a caller and a voice agent.
You are given the transcript and one statement about it. Decide whether the statement
is true of the transcript. Answer with one line of JSON and nothing else:
{"verdict": "pass" or "fail", "reason": "<one short sentence>"}"""


@dataclass(frozen=True)
class Verdict:
    statement: str
    verdict: str  # "pass" | "fail" | "skipped" | "error"
    reason: str

    @property
    def failed(self) -> bool:
        return self.verdict in ("fail", "error")

    def to_dict(self) -> dict[str, str]:
        return {"statement": self.statement, "verdict": self.verdict, "reason": self.reason}


def judge_config(agent: LoadedAgent, judge_llm: LLMConfig | None) -> LLMConfig | None:
    if judge_llm is not None:
        return judge_llm
    # the offline engines are no judges: the dialog engine cannot read a transcript, and a
    # packaged local model (made to pick an agent's functions) answers in its own words
    return None if agent.config.llm.engine in ("dialog", "local") else agent.config.llm


class Judge:
    def __init__(self, agent: LoadedAgent, cfg: LLMConfig | None, outbound: Outbound | None) -> None:
        self.agent = agent
        self.cfg = cfg
        self.outbound = outbound

    def _model(self) -> LanguageModel:
        assert self.cfg is not None
        cfg = self.agent.config.model_copy(update={"llm": self.cfg, "prompt": INSTRUCTIONS})
        return make_llm(cfg, self.outbound)

    async def ask(self, statement: str, transcript: list[str]) -> Verdict:
        if self.cfg is None:
            return Verdict(statement, "skipped", NO_JUDGE)
        llm = self._model()
        messages = [Message("system", INSTRUCTIONS),
                    Message("user", "Transcript:\n" + "\n".join(transcript) + f"\n\nStatement: {statement}")]
        text = ""
        try:
            async for ev in llm.stream(messages, []):
                if isinstance(ev, TextDelta):
                    text += ev.text
        except ProviderError as e:
            return Verdict(statement, "error", f"the judge LLM failed: {e}")
        finally:
            await llm.aclose()
        return parse_verdict(statement, text)


def parse_verdict(statement: str, text: str) -> Verdict:
    """The judge's answer: JSON if it gave JSON, else a leading pass/fail word."""
    m = re.search(r"\{.*\}", text, re.S)
    if m:
        try:
            data = json.loads(m.group())
            verdict = str(data.get("verdict", "")).strip().lower()
            if verdict in ("pass", "fail"):
                return Verdict(statement, verdict, str(data.get("reason", "")).strip())
        except (ValueError, AttributeError):
            pass
    word = re.match(r"\W*(pass|fail|yes|no|true|false)\b", text.strip(), re.I)
    if word:
        verdict = "pass" if word.group(1).lower() in ("pass", "yes", "true") else "fail"
        return Verdict(statement, verdict, text.strip()[:300])
    return Verdict(statement, "error", f"the judge's answer was not a verdict: {text.strip()[:200]!r}")
