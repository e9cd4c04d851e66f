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
