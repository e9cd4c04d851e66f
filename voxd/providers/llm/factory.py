"""Build the language model for one call from an agent's `llm:` block.

LLM objects are per call: the dialog engine keeps per-conversation slot state, and
HTTP clients are cheap to create."""

from __future__ import annotations

from voxd.agents.schema import AgentConfig, LLMConfig
from voxd.core.secrets import Outbound
from voxd.providers.base import LanguageModel


def make_llm(agent: AgentConfig, outbound: Outbound | None = None) -> LanguageModel:
    """``outbound``: where requests may go and which keys go with them (strict when None)."""
    out = outbound or Outbound()
    if agent.llm.fallback:
        from voxd.providers.factory import _chain
        from voxd.providers.fallback import FallbackLLM

        return FallbackLLM(_chain("llm", [agent.llm, *agent.llm.fallback], lambda c: _make(agent, c, out)))
    return _make(agent, agent.llm, out)


def _make(agent: AgentConfig, cfg: LLMConfig, out: Outbound) -> LanguageModel:
    if cfg.engine == "dialog":
        from voxd.providers.llm.dialog import DialogEngine

        return DialogEngine(agent.dialog)
    if cfg.engine == "openai-compatible":
        from voxd.providers.llm.openai_compat import OpenAICompatibleLLM

        return OpenAICompatibleLLM(cfg, outbound=out)
    if cfg.engine == "openai":
        from voxd.providers.llm.openai_sdk import OpenAILLM

        llm = OpenAILLM(cfg, outbound=out)
        llm.prices = dict(cfg.prices)  # type: ignore[attr-defined]
        return llm
    if cfg.engine == "fake":
        from voxd.providers.fakes import FakeLLM

        return FakeLLM(list(cfg.options.get("steps", [])))
    raise ValueError(f"llm.engine: unknown engine {cfg.engine!r}")
