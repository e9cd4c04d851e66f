"""A call's recorder on a session clocked like a leg clocks it: consent prompt, secure
input muted and masked, finalisation (checksum, recording.ready), overrides, retention."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tests.call.helpers import make_session
from voxd.agents.schema import RecordingConfig
from voxd.call.events import RecordingReady
from voxd.call.recording import REQUEST_KEY, CallRecorder, Recordings, effective
from voxd.call.session import CallSession
from voxd.media.frame import AudioFrame
from voxd.store.db import Database

FRAME = 320
SECURE_AGENT: dict[str, Any] = {
    "greeting": "Welcome.",
    "recording": {"enabled": True, "consent_prompt": "This call is recorded.", "retention_days": 30},
    "dtmf": {
        "main_menu": "main",
        "menus": {"main": {"prompt": "Press 1 to pay.", "options": {"1": {"then": "collect", "target": "card"}}}},
        "collect": {"card": {"prompt": "Enter your card.", "max_digits": 4, "secure": True,
                             "confirm": "You entered {digits}."}},
    },
}


def hum(i: int) -> bytes:
    """Quiet caller noise: nonzero samples the VAD takes for no speech."""
    rng = np.random.default_rng(i)
    return rng.integers(-150, 150, FRAME).astype("<i2").tobytes()


async def run(session: CallSession, rec: CallRecorder | None, seconds: float,
              dtmf: dict[int, str] | None = None) -> None:
    """What `voxd.net.leg.CallLeg` does every 20 ms: caller frame to the recorder and the
    session, the bot's frame to the wire and the recorder."""
    await session.start()
    for i in range(int(seconds / 0.02)):
        if dtmf and i in dtmf:
            session.feed_dtmf(dtmf[i], source="test")
        frame = AudioFrame(hum(i))
        if rec is not None:
            rec.caller(session.media_t, frame)
        session.feed_audio(frame)
        out = session.next_frame()
        if out is not None and rec is not None:
            rec.bot(session.media_t, out)
        await asyncio.sleep(0)
        await session.wait_idle()
    await session.close("caller_hangup", "caller")


def recorder(tmp_path: Path, session: CallSession, room: Recordings | None = None) -> CallRecorder:
    room = room or Recordings(tmp_path / "recordings")
    rec = room.recorder_for(session)
    assert rec is not None
    session.control.media_ended = rec.close  # type: ignore[method-assign]  # the leg closes it at media end
    return rec


async def test_consent_prompt_comes_before_the_greeting_and_the_file_is_announced(tmp_path: Path) -> None:
    session, _, events, tts, _ = make_session(SECURE_AGENT)
    room = Recordings(tmp_path / "recordings")
    rec = recorder(tmp_path, session, room)
    await run(session, rec, 4.0)
    await room.flush()
    assert tts.texts[:2] == ["This call is recorded.", "Welcome."]
    ready = [e for e in events if isinstance(e, RecordingReady)]
    assert len(ready) == 1
    info = ready[0].info
    path = room.path_for(session.record.id, "wav")
    assert info["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert info["bytes"] == path.stat().st_size and info["status"] == "ready"
    assert abs(info["duration_s"] - 4.0) < 0.05
    assert session.record.metadata["recording"]["sha256"] == info["sha256"]
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    # the bot's voice (FakeTTS's 440 Hz tone) is on the right, the caller's hum on the left
    assert np.abs(x[:, 1]).max() > 7000 and np.abs(x[:, 0]).max() < 200
    assert info["expires_at"] == pytest.approx(time.time() + 30 * 86400, abs=60)


async def test_secure_entry_is_silence_in_the_recording_and_stars_everywhere(tmp_path: Path) -> None:
    session, _, _events, tts, _llm = make_session(SECURE_AGENT)
    rec = recorder(tmp_path, session)
    presses = {100: "1", 200: "4", 210: "2", 220: "4", 230: "2"}  # 2 s: menu key; 4.0-4.6 s: the card
    await run(session, rec, 8.0, presses)
    digits = [d.digit for d in session.record.dtmf]
    assert digits == ["1", "***", "***", "***", "***"]
    said = " ".join(tts.texts)
    assert "You entered ***." in said and "4242" not in said and "4 2 4 2" not in said
    assert not any("4242" in str(m.content) for m in session.messages)
    assert any("(The caller entered card: ***)" in str(m.content) for m in session.messages)
    path = rec.path
    with wave.open(str(path)) as w:
        x = np.frombuffer(w.readframes(w.getnframes()), dtype="<i2").reshape(-1, 2)
    sec = 16000
    assert x[int(1.0 * sec):int(2.0 * sec), 0].any()  # before the menu key: recorded
    assert not x[int(2.05 * sec):int(4.6 * sec)].any()  # prompt and entry: both channels silent
    assert x[int(5.2 * sec):, 0].any()  # recording again after the tail
    assert rec.muted_s > 2.5


def test_a_call_override_sits_on_the_agents_settings() -> None:
    agent = RecordingConfig(enabled=True, format="opus", retention_days=7)
    got = effective(agent, {"enabled": True, "channels": "mono"})
    assert (got.format, got.channels, got.retention_days) == ("opus", "mono", 7)
    assert not effective(agent, {"enabled": False}).enabled
    with pytest.raises(ValueError, match=r"recording\.format"):
        effective(agent, {"format": "mp3"})


async def test_an_override_from_the_api_turns_recording_on_for_one_call(tmp_path: Path) -> None:
    session, *_ = make_session({"recording": {"enabled": False}})
    room = Recordings(tmp_path / "r")
    assert room.recorder_for(session) is None
    other, *_ = make_session({"recording": {"enabled": False}})
    other.record.metadata[REQUEST_KEY] = {"enabled": True, "format": "opus"}
    rec = room.recorder_for(other)
    assert rec is not None and rec.path.suffix == ".ogg"
    assert REQUEST_KEY not in other.record.metadata
    rec.close()


async def test_retention_deletes_expired_recordings_and_marks_the_call(tmp_path: Path,
                                                                      caplog: pytest.LogCaptureFixture) -> None:
    db = await Database.open(tmp_path / "voxd.db")
    try:
        room = Recordings(tmp_path / "recordings", db.calls())
        keep, *_ = make_session({"recording": {"enabled": True}})  # no retention: kept
        old, *_ = make_session({"recording": {"enabled": True, "retention_days": 1}})
        for s in (keep, old):
            rec = recorder(tmp_path, s, room)
            await run(s, rec, 1.0)
            await db.calls().save(s.record)
        await room.flush()
        assert (await db.calls().get(old.record.id))["metadata"]["recording"]["status"] == "ready"
        assert await room.sweep() == []  # nothing has expired yet
        with caplog.at_level(logging.INFO, logger="voxd.recording"):
            gone = await room.sweep(now=time.time() + 2 * 86400)
        assert gone == [old.record.id]
        assert not room.path_for(old.record.id, "wav").exists()
        assert room.path_for(keep.record.id, "wav").exists()
        assert f"recording of call {old.record.id} deleted: retention" in caplog.text
        meta = (await db.calls().get(old.record.id))["metadata"]["recording"]
        assert meta["status"] == "deleted" and meta["deleted_by"] == "retention"
    finally:
        await db.close()
