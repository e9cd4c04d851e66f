"""`engine: local`: the agent's replies from a packaged model run by llama.cpp.

Per step, the model writes one action object under a grammar built from the agent's
functions (``actions``); `say` text is streamed to the caller as it is written. A
function call is checked against its schema first; a wrong one goes back to the
model once with the reason, and a second wrong one ends the step with an error the
fallback chain (``llm: [local, dialog]``) answers, or with the agent's fallback line
when there is no chain. After a function result the agent's own reply template for
that function is used when its dialog block has one (the answer is then exact and
costs no second generation); otherwise the model words it, with only `say` allowed.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from collections.abc import AsyncIterator
from typing import Any

from voxd.agents.schema import AgentConfig, LLMConfig
from voxd.providers.base import (
    LanguageModel,
    LLMEvent,
    Message,
    ProviderError,
    TextDelta,
    ToolCall,
    ToolCallsRequested,
    ToolSpec,
    Usage,
)
from voxd.providers.llm.dialog import render as render_template
from voxd.providers.llm.extract import EXTRACTORS
from voxd.providers.llm.local import prompt as P
from voxd.providers.llm.local import runtime
from voxd.providers.llm.local.actions import ActionReader, action_schema, check_arguments, parse_action
from voxd.providers.llm.local.catalog import DEFAULT_MODEL
from voxd.providers.llm.local.supervisor import NAME, Stats

log = logging.getLogger("voxd.providers.local_llm")
OPTIONS = {"few_shot", "result_replies", "max_tokens"}
DEFAULT_FALLBACK_LINE = "Sorry, I didn't catch that. Could you say it again?"


class LocalLLM(LanguageModel):
    name = NAME

    def __init__(self, agent: AgentConfig, cfg: LLMConfig, *, chained: bool = False) -> None:
        unknown = set(cfg.options) - OPTIONS
        if unknown:
            raise ValueError(f"llm.options: unknown option(s) {sorted(unknown)} for engine local; "
                             f"expected some of {sorted(OPTIONS)}")
        self.agent = agent
        self.model = cfg.model or DEFAULT_MODEL
        self.chained = chained
        self.few_shot = bool(cfg.options.get("few_shot", True))
        self.templates = P.reply_templates(agent.dialog) if cfg.options.get("result_replies", "templates") == "templates" else {}
        self.max_tokens = int(cfg.options.get("max_tokens") or cfg.max_tokens or runtime.settings().max_reply_tokens)
        self.temperature = cfg.temperature or 0.0
        self._history: P.History | None = None
        self._prefix_cache: dict[str, str] = {}
        self._ids = itertools.count(1)
        self.last_stats: Stats | None = None
        self.fallback_line = agent.dialog.fallback or DEFAULT_FALLBACK_LINE

    # -- the prompt
    def prefix_for(self, system_prompt: str, tools: list[ToolSpec]) -> str:
        key = hashlib.sha256(json.dumps([system_prompt, [(t.name, t.description, t.parameters) for t in tools]],
                                        sort_keys=True, default=str).encode()).hexdigest()
        if key not in self._prefix_cache:
            shots = P.few_shots(self.agent.dialog, {t.name for t in tools}) if self.few_shot else []
            self._prefix_cache[key] = P.prefix(P.system_text(system_prompt, tools), shots)
        return self._prefix_cache[key]

    def build_prompt(self, messages: list[Message], tools: list[ToolSpec]) -> str:
        system = messages[0].content if messages and messages[0].role == "system" else self.agent.prompt
        head = self.prefix_for(system, tools)
        if self._history is None:
            self._history = P.History(P.history_budget(runtime.settings().context, len(head), self.max_tokens))
        return head + self._history.render(messages) + P.assistant_open()

    async def warm_up(self, tools: list[ToolSpec]) -> None:
        """Start the model and evaluate this agent's prefix, so the first turn is fast."""
        rt = runtime.runtime(self.model)
        await rt.warm(self.prefix_for(self.agent.prompt, tools))

    # -- one step
    async def stream(self, messages: list[Message], tools: list[ToolSpec]) -> AsyncIterator[LLMEvent]:
        last = messages[-1] if messages else None
        after_tool = last is not None and last.role == "tool"
        if after_tool and last is not None:
            if last.name == P.OPEN_MENU:
                return  # the menu's own prompt speaks next
            templated = self._templated_reply(messages, last)
            if templated is not None:
                for ev in _words(templated):
                    yield ev
                return
        prompt = self.build_prompt(messages, tools)
        schema = json.dumps(action_schema(tools, allow_tools=not after_tool))
        by_name = {t.name: t for t in tools}
        for attempt in range(2):
            reader = ActionReader()
            stats = Stats()
            try:
                rt = runtime.runtime(self.model)
                async with rt.slot() as proc:
                    async for piece in proc.complete(prompt, schema, self.max_tokens, stats=stats):
                        said = reader.feed(piece)
                        if said:
                            yield TextDelta(said)
            except ProviderError as e:
                log.warning("local model %s: %s", self.model, e)
                if reader.saying or not self.chained:
                    if not reader.saying:
                        for ev in _words(self.fallback_line):
                            yield ev
                    return
                raise
            self.last_stats = stats
            usage = Usage(stats.prompt_tokens, stats.completion_tokens)
            action = parse_action(reader.text)
            problem: str
            if action is not None and action.say is not None:
                yield usage
                return
            if action is not None and action.tool is not None:
                ask = self._missing_slot(action.tool, action.arguments or {}, messages)
                if ask is not None:  # a value the caller never said: ask for it, as the agent's dialog does
                    for ev in _words(ask):
                        yield ev
                    yield usage
                    return
                spec = by_name.get(action.tool)
                problem = f"there is no function {action.tool}" if spec is None else (
                    check_arguments(spec, action.arguments or {}) or "")
                if not problem:
                    args = action.arguments or {}
                    yield usage
                    yield ToolCallsRequested((ToolCall(f"loc_{next(self._ids)}", action.tool, args, json.dumps(args)),))
                    return
            else:
                problem = "the reply was not one complete JSON action"
                if reader.saying:  # cut short while speaking: what was said stands
                    yield usage
                    return
            if attempt == 0:  # back to the model once, with the reason
                prompt += (reader.text.strip() + P.END + "\n" + P.START + "user\n"
                           + f"[error] {problem}. Write one corrected action." + P.END + "\n" + P.assistant_open())
        log.warning("local model %s: invalid action twice (%s): %r", self.model, problem, reader.text[:200])
        if self.chained:
            raise ProviderError(NAME, f"invalid action twice: {problem}", retryable=True)
        for ev in _words(self.fallback_line):
            yield ev

    async def complete_json(self, messages: list[Message], schema: dict[str, Any], name: str) -> tuple[str, Usage]:
        """One generation held by the grammar llama.cpp builds from ``schema``. Not live:
        it waits for the model to load and for a free slot (up to a minute each)."""
        prompt = "".join(f"{P.START}{m.role}\n{m.content}{P.END}\n" for m in messages if m.role != "tool")
        stats = Stats()
        pieces: list[str] = []
        rt = runtime.runtime(self.model)
        rt.start()
        if not await rt.wait_ready(60.0):
            raise ProviderError(NAME, f"model {self.model} did not become ready", retryable=True)
        async with rt.slot(timeout_s=60.0) as proc:
            async for piece in proc.complete(prompt + P.assistant_open(), json.dumps(schema),
                                             max(self.max_tokens, 400), stats=stats):
                pieces.append(piece)
        return "".join(pieces), Usage(stats.prompt_tokens, stats.completion_tokens)

    def _missing_slot(self, tool: str, arguments: dict[str, Any], messages: list[Message]) -> str | None:
        """Small models fill required arguments with invented values ("tomorrow at 10:00"
        for "I'd like to book"). Where the agent's dialog block says an argument comes
        from a slot of the caller's words, the slot's extractor must find it in the
        caller's recent turns; if not, the slot's own question is the reply."""
        said = " ".join(m.content for m in [m for m in messages if m.role == "user"][-3:])
        for intent in self.agent.dialog.intents:
            if intent.tool != tool:
                continue
            known: dict[str, Any] = {}
            for slot in intent.slots:
                value = EXTRACTORS[slot.extract](said)
                if value is not None:
                    known[slot.name] = value
                elif slot.required and f"${slot.name}" in intent.arguments.values():
                    return render_template(slot.prompt, known)
        return None

    def _templated_reply(self, messages: list[Message], result: Message) -> str | None:
        template = self.templates.get(result.name or "")
        if template is None:
            return None
        try:
            payload = json.loads(result.content)
        except json.JSONDecodeError:
            return None
        if not isinstance(payload, dict) or "error" in payload:
            return None
        args: dict[str, Any] = {}
        for m in reversed(messages):
            hit = next((c for c in m.tool_calls if c.id == result.tool_call_id), None)
            if hit is not None:
                args = dict(hit.arguments)
                break
        return render_template(template, {**args, "result": payload.get("result")})


def _words(text: str) -> list[LLMEvent]:
    words = text.split(" ")
    return [TextDelta(w + (" " if i < len(words) - 1 else "")) for i, w in enumerate(words)]

