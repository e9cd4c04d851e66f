"""One-shot registry building for scripts and tests; the daemon keeps a `ToolLibrary`."""

from __future__ import annotations

from pathlib import Path

from voxd.agents.schema import AgentConfig
from voxd.config.tools import ToolsConfig
from voxd.tools.library import ToolLibrary
from voxd.tools.registry import ToolRegistry


def build_registry(agent: AgentConfig, config: ToolsConfig | None = None, *,
                   base_dir: Path | None = None, state_dir: Path | None = None) -> ToolRegistry:
    """Built-ins plus the agent's own functions. The library behind it is not closed:
    prefer ``ToolLibrary.registry_for`` in anything long-lived."""
    return ToolLibrary(config, base_dir=base_dir, state_dir=state_dir).registry_for(agent)
