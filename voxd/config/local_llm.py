"""The ``local_llm:`` block of voxd.yaml (read by voxd.providers.llm.local): where models live and what the model
processes may use. Agents choose the model (``llm: {engine: local, model: ...}``);
the operator decides the resources."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field


class LocalLLMConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    models_dir: str | None = Field(None, description="Folder of installed models; default <state_dir>/models.")
    threads: int = Field(2, ge=1, le=64, description="CPU threads of each model process.")
    context: int = Field(4096, ge=512, le=32768, description="Context window (tokens) of each slot.")
    slots: int = Field(1, ge=1, le=8, description="Model processes per model: replies generated at once.")
    start: Literal["eager", "lazy"] = Field(
        "eager", description="eager: start the model processes with the daemon; lazy: on the first call.")
    queue_timeout_s: float = Field(
        4.0, gt=0, description="A reply that waits longer than this for a free slot goes to the fallback engine.")
    first_token_timeout_s: float = Field(
        30.0, gt=0, description="A slot silent this long during a reply is restarted (the turn falls back).")
    max_reply_tokens: int = Field(160, ge=16, le=2048)
    restart_backoff_s: tuple[float, float] = Field(
        (0.5, 30.0), description="First and longest wait before restarting a model process that exited.")
    prompt_cache_mb: int = Field(256, ge=0, le=8192, description="Saved prompt states per process (system prompts).")

    def resolved_models_dir(self, state_dir: Path) -> Path:
        return Path(self.models_dir) if self.models_dir else state_dir / "models"
