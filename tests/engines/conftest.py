"""Shared, warmed engines for the engine tests (models load once per session)."""

from __future__ import annotations

import numpy as np
import pytest

from voxd.providers.stt.whisper import WhisperSTT


@pytest.fixture(scope="session")
def stt() -> WhisperSTT:
    engine = WhisperSTT()
    engine.transcribe_sync(np.zeros(1600, dtype=np.int16))  # loads the shared model
    return engine
