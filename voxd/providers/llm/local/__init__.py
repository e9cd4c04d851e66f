"""A local language model: llama.cpp running packaged GGUF weights in supervised
worker processes (never on the event loop's thread), with tool calls constrained by
a grammar generated from the agent's functions.

Modules: ``catalog`` (which models exist and how they install), ``runtime`` (the
running models, configured from voxd.config.local_llm), ``worker`` (the child process around llama.cpp),
``supervisor`` (starts, restarts and queues for the workers), ``actions`` (the
action grammar and incremental reader), ``prompt``, ``engine`` (the LanguageModel).
This module registers ``engine: local`` (voxd.providers.engines).
"""

from __future__ import annotations

from typing import Any

from voxd.providers.engines import BuildContext, EngineSpec, FreeOptions, register


def _build(cfg: Any, opts: FreeOptions, ctx: BuildContext) -> Any:
    from voxd.providers.llm.local.engine import LocalLLM

    assert ctx.agent is not None, "the local engine reads the agent's prompt and dialog: block"
    chain = [ctx.agent.llm, *ctx.agent.llm.fallback]
    return LocalLLM(ctx.agent, cfg, chained=len(chain) > 1 and chain[-1].engine != "local")


register(EngineSpec("llm", "local", _build))
