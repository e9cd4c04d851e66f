"""Errors that cross layers. Repositories, sources and services raise these; the control
API maps each to one HTTP status at its boundary (``voxd.api.pipeline``), so no handler
translates them itself (httpx's ``_exceptions.py`` is the model)."""

from __future__ import annotations


class VoxdError(Exception):
    """Base of voxd's own errors."""


class NotFound(VoxdError, LookupError):
    """The named object does not exist (or belongs to someone else: callers cannot tell)."""


class NotSupported(VoxdError):
    """The operation is not available here (e.g. outbound calls on a transport without it)."""


class ToolError(Exception):
    """A tool failed in a way the LLM should hear about (bad input, unavailable).
    Raised by functions (``voxd.tools``) and by the settings they read (``voxd.config.tools``)."""


class AtCapacity(VoxdError):
    """A configured cap is reached (a trunk's concurrent calls or calls per second); retry later."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after
