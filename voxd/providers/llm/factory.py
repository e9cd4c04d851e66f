"""Build the language model for one call from an agent's `llm:` block.

LLM objects are per call: the dialog engine keeps per-conversation slot state, and
HTTP clients are cheap to create."""

from __future__ import annotations

from voxd.agents.schema import AgentConfig, LLMConfig
from voxd.core.secrets import Outbound
from voxd.providers import engines
from voxd.providers.base import LanguageModel
from voxd.providers.engines import BuildContext


def make_llm(agent: AgentConfig, outbound: Outbound | None = None) -> LanguageModel:
    """``outbound``: where requests may go and which keys go with them (strict when None)."""
    out = outbound or Outbound()
    if agent.llm.fallback:
        from voxd.providers.factory import _chain
        from voxd.providers.fallback import FallbackLLM

        return FallbackLLM(_chain("llm", [agent.llm, *agent.llm.fallback], lambda c: _make(agent, c, out)))
    return _make(agent, agent.llm, out)


def _make(agent: AgentConfig, cfg: LLMConfig, out: Outbound) -> LanguageModel:
    """The engine ``cfg.engine`` names, from its registration (``voxd.providers.engines``)."""
    llm = engines.build("llm", cfg, BuildContext(out, agent))
    if not isinstance(llm, LanguageModel):
        raise TypeError(f"engine {cfg.engine!r} built a {type(llm).__name__}, not a LanguageModel")
    return llm
