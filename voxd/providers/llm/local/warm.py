"""Start the local model an agent uses and evaluate its prompt prefix before calls."""

from __future__ import annotations

import asyncio
import logging

from voxd.agents.schema import AgentConfig
from voxd.providers.base import ProviderError, ToolSpec

log = logging.getLogger("voxd.providers.local_llm")
WARM_WAIT_S = 90.0  # start-up waits at most this long; the prefix is finished in the background
_background: set[asyncio.Task[None]] = set()


def uses_local(agent: AgentConfig) -> bool:
    return any(c.engine == "local" for c in (agent.llm, *agent.llm.fallback))


async def warm_agent(agent: AgentConfig, tools: list[ToolSpec]) -> None:
    """No-op for agents without a local engine; a missing model is a warning (the
    agent's fallback engine answers until it is installed)."""
    from voxd.providers.llm.local import runtime
    from voxd.providers.llm.local.engine import LocalLLM

    if runtime.settings().start == "lazy":
        return
    for cfg in (agent.llm, *agent.llm.fallback):
        if cfg.engine != "local":
            continue
        try:
            task = asyncio.ensure_future(LocalLLM(agent, cfg.model_copy(update={"fallback": []})).warm_up(tools))
            done, _ = await asyncio.wait({task}, timeout=WARM_WAIT_S)
            if not done:  # a very busy machine: the fallback answers until the model is ready
                log.warning("agent %s: local model still starting after %.0f s", agent.name, WARM_WAIT_S)
                _background.add(task)
                task.add_done_callback(_background.discard)
                continue
            task.result()
        except ProviderError as e:
            log.warning("agent %s: local model unavailable, its fallback answers: %s", agent.name, e)
