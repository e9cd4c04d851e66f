"""Recording a call: the leg's recorder tap (`voxd.net.leg.Recorder`) onto disk.

`Recordings` is the process's recording room: the folder (`<state_dir>/recordings`),
the factory the call legs ask for each call's recorder, deletion, and the retention
sweeper. `CallRecorder` streams one call into `voxd.media.recording.Timeline` (caller
left, bot right, on the media clock) and, at hang-up, finalises the file: the record's
`metadata.recording` gets format, duration, size and SHA-256 (hashed in a worker thread),
the store is updated and `RecordingReady` (the `recording.ready` webhook) is published.

Each recording has a sidecar `<call_id>.json` (agent, format, when it expires) so the
sweeper needs only the folder, also for recordings of calls a crash cut short.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import os
import time
import wave
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from voxd.agents.schema import RecordingConfig
from voxd.call.events import CallEvent, RecordingReady
from voxd.media.frame import AudioFrame
from voxd.media.recording import Timeline, open_writer
from voxd.store.repos import CallRepo

if TYPE_CHECKING:
    from voxd.call.session import CallSession

log = logging.getLogger("voxd.recording")

REQUEST_KEY = "recording_request"  # metadata a POST /api/v1/calls override arrives in (popped at admit)
FRAME_S = 0.02
SECURE_TAIL_S = 0.5  # silence kept after a secure entry ends (the last key's tone)
EXTENSIONS = {"wav": "wav", "opus": "ogg"}
CONTENT_TYPES = {"wav": "audio/wav", "opus": "audio/ogg"}
DAY_S = 86400.0


def effective(cfg: RecordingConfig, override: dict[str, Any] | None) -> RecordingConfig:
    """The agent's settings with a call's override (POST /api/v1/calls `recording`) on top.
    Raises ValueError naming the field for an override that does not validate."""
    if not override:
        return cfg
    try:
        return RecordingConfig.model_validate({**cfg.model_dump(), **override})
    except ValidationError as e:
        first = e.errors()[0]
        raise ValueError(f"recording.{'.'.join(str(p) for p in first['loc'])}: {first['msg']}") from None


def _wav_seconds(path: Path) -> float | None:
    try:
        with wave.open(str(path)) as w:
            return round(float(w.getnframes()) / float(w.getframerate()), 3)
    except (OSError, EOFError, wave.Error):
        return None


def sha256_of(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


class Recordings:
    def __init__(self, directory: Path, repo: CallRepo | None = None) -> None:
        self.directory = directory
        self.repo = repo  # the calls' store: the record's metadata.recording kept current
        self.repo_for: Callable[[str], CallRepo] | None = None  # another organisation's calls
        self._tasks: set[asyncio.Task[None]] = set()
        self._sweeper: asyncio.Task[None] | None = None

    def repo_of(self, org: object) -> CallRepo | None:
        """The store of the calls of ``org`` (a sidecar's ``org``; absent: the default)."""
        if not isinstance(org, str) or org == "default" or self.repo_for is None or self.repo is None:
            return self.repo
        return self.repo_for(org)

    def path_for(self, call_id: str, fmt: str) -> Path:
        return self.directory / f"{call_id}.{EXTENSIONS[fmt]}"

    # -- the leg's factory
    def recorder_for(self, session: CallSession) -> CallRecorder | None:
        """A recorder when the agent (or the call's override) records; also arms the consent prompt."""
        override = session.record.metadata.pop(REQUEST_KEY, None)
        try:
            settings = effective(session.agent.recording, override if isinstance(override, dict) else None)
        except ValueError as e:  # the API validates first; a bad override here keeps the agent's own
            log.warning("call %s: recording override ignored: %s", session.record.id, e)
            settings = session.agent.recording
        if not settings.enabled:
            return None
        try:
            rec = CallRecorder(self, session, settings)
        except OSError as e:
            log.error("call %s: cannot record: %s", session.record.id, e)
            return None
        session.consent_prompt = settings.consent_prompt
        return rec

    # -- files
    def _sidecar(self, call_id: str) -> Path:
        return self.directory / f"{call_id}.json"

    def write_sidecar(self, call_id: str, meta: dict[str, Any]) -> None:
        tmp = self._sidecar(call_id).with_suffix(".json.tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, self._sidecar(call_id))

    def read_sidecar(self, call_id: str) -> dict[str, Any] | None:
        try:
            meta = json.loads(self._sidecar(call_id).read_text())
        except (OSError, ValueError):
            return None
        return meta if isinstance(meta, dict) else None

    def delete_files(self, call_id: str) -> bool:
        """Remove a recording's audio and sidecar; True when there was audio."""
        found = False
        for ext in EXTENSIONS.values():
            with contextlib.suppress(FileNotFoundError):
                (self.directory / f"{call_id}.{ext}").unlink()
                found = True
        with contextlib.suppress(FileNotFoundError):
            self._sidecar(call_id).unlink()
        return found

    # -- retention
    async def sweep(self, now: float | None = None) -> list[str]:
        """Delete every recording past its `expires_at`; returns the call ids deleted."""
        now = time.time() if now is None else now
        gone: list[str] = []
        for side in sorted(self.directory.glob("call_*.json")):
            call_id = side.stem
            meta = self.read_sidecar(call_id)
            expires = meta.get("expires_at") if meta else None
            if not isinstance(expires, (int, float)) or expires > now:
                continue
            self.delete_files(call_id)
            log.info("recording of call %s deleted: retention (%s days) expired", call_id,
                     meta.get("retention_days") if meta else "?")
            gone.append(call_id)
            repo = self.repo_of(meta.get("org") if meta else None)
            if repo is not None:
                try:
                    await _mark_deleted(repo, call_id, "retention")
                except Exception:
                    log.exception("call %s: could not mark the recording deleted", call_id)
        return gone

    async def recover(self) -> list[str]:
        """Recordings a crash cut short (no `finished_at` in their sidecar): their calls get
        `metadata.recording` with `status: recovered`, size and checksum of what is on disk."""
        found: list[str] = []
        for side in sorted(self.directory.glob("call_*.json")):
            call_id = side.stem
            meta = self.read_sidecar(call_id)
            if meta is None or meta.get("finished_at") or meta.get("format") not in EXTENSIONS:
                continue
            path = self.path_for(call_id, meta["format"])
            if not path.exists():
                continue
            info: dict[str, Any] = {
                "status": "recovered", "format": meta["format"], "channels": meta.get("channels", "stereo"),
                "content_type": CONTENT_TYPES[meta["format"]], "file": path.name, "bytes": path.stat().st_size,
                "duration_s": await asyncio.to_thread(_wav_seconds, path) if meta["format"] == "wav" else None,
                "sha256": await asyncio.to_thread(sha256_of, path), "expires_at": meta.get("expires_at")}
            repo = self.repo_of(meta.get("org"))
            if repo is not None and not await repo.set_recording(call_id, info):
                log.warning("recording %s has no call record", path.name)
            self.write_sidecar(call_id, {**meta, "finished_at": time.time(), "recovered": True})
            log.info("recording of call %s recovered after an unclean stop: %s bytes", call_id, info["bytes"])
            found.append(call_id)
        return found

    async def start(self, interval_s: float = 3600.0) -> None:
        """Recover recordings a crash cut short, then start the retention sweeper (every
        `interval_s`, and once now)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        try:
            await self.recover()
        except Exception:
            log.exception("recovering recordings failed")
        async def loop() -> None:
            while True:
                try:
                    await self.sweep()
                except Exception:
                    log.exception("recording retention sweep failed")
                await asyncio.sleep(interval_s)

        if self._sweeper is None:
            self.directory.mkdir(parents=True, exist_ok=True)
            self._sweeper = asyncio.create_task(loop(), name="recording-sweeper")

    async def stop(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None
        await self.flush()

    async def flush(self) -> None:
        """Wait until every finished recording is hashed and announced."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    def spawn(self, coro: Any) -> None:
        task: asyncio.Task[None] = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


async def _mark_deleted(repo: CallRepo, call_id: str, why: str) -> None:
    call = await repo.get(call_id)
    if call is None:
        return
    info = dict(call.get("metadata", {}).get("recording") or {})
    if info:
        info.update(status="deleted", deleted_at=time.time(), deleted_by=why)
        await repo.set_recording(call_id, info)


class CallRecorder:
    """One call's recording (implements `voxd.net.leg.Recorder`)."""

    def __init__(self, room: Recordings, session: CallSession, settings: RecordingConfig) -> None:
        self.room = room
        self.session = session
        self.settings = settings
        self.call_id = session.record.id
        room.directory.mkdir(parents=True, exist_ok=True)
        self.path = room.path_for(self.call_id, settings.format)
        now = time.time()
        days = settings.retention_days
        room.write_sidecar(self.call_id, {
            "call_id": self.call_id, "agent": session.record.agent, "org": session.record.org,
            "format": settings.format,
            "channels": settings.channels, "created_at": now, "retention_days": days,
            "expires_at": now + days * DAY_S if days else None})
        self.timeline = Timeline(open_writer(self.path, settings.format, settings.channels), settings.channels)
        self._quiet_until = -1.0
        self.muted_s = 0.0
        self.closed = False

    def _muted(self, at_s: float) -> bool:
        if self.settings.pause_on_secure_input and self.session.keypad.secure:
            self._quiet_until = at_s + SECURE_TAIL_S
        return at_s < self._quiet_until

    def caller(self, at_s: float, frame: AudioFrame) -> None:
        if self._muted(at_s):
            self.muted_s += FRAME_S
            self.timeline.advance(at_s + FRAME_S)
            return
        self.timeline.place(0, at_s, frame.pcm)

    def bot(self, at_s: float, frame: AudioFrame) -> None:
        if not self._muted(at_s):
            self.timeline.place(1, at_s, frame.pcm)

    def close(self) -> None:
        """Hang-up: write the tail, close the file, then hash it off the event loop and announce it."""
        if self.closed:
            return
        self.closed = True
        try:
            self.timeline.close()
        except Exception:
            log.exception("call %s: finishing the recording failed", self.call_id)
        record = self.session.record
        if self.timeline.samples_written == 0:  # never answered: no media, no recording
            self.room.delete_files(self.call_id)
            return
        size = self.path.stat().st_size if self.path.exists() else 0
        info: dict[str, Any] = {
            "status": "finalising", "format": self.settings.format, "channels": self.settings.channels,
            "content_type": CONTENT_TYPES[self.settings.format], "file": self.path.name,  # in the recordings folder
            "duration_s": round(self.timeline.duration_s, 3), "bytes": size,
            "muted_s": round(self.muted_s, 2), "sha256": None,
        }
        side = self.room.read_sidecar(self.call_id)
        if side and side.get("expires_at"):
            info["expires_at"] = side["expires_at"]
        record.metadata["recording"] = info  # saved with the call's end
        emit: Callable[[CallEvent], None] = self.session.publish
        self.room.spawn(self._finish(info, emit))

    async def _finish(self, info: dict[str, Any], emit: Callable[[CallEvent], None]) -> None:
        try:
            info["sha256"] = await asyncio.to_thread(sha256_of, self.path)
        except OSError as e:
            log.error("call %s: cannot read the recording back: %s", self.call_id, e)
            info["status"] = "failed"
            return
        info["status"] = "ready"
        side = self.room.read_sidecar(self.call_id)
        if side is not None:
            self.room.write_sidecar(self.call_id, {**side, "finished_at": time.time()})
        repo = self.room.repo_of(self.session.record.org)
        if repo is not None:
            try:
                await repo.set_recording(self.call_id, info)
            except Exception:
                log.exception("call %s: could not store the recording's metadata", self.call_id)
        log.info("call %s recorded: %s %.1f s %d bytes", self.call_id, info["format"], info["duration_s"],
                 info["bytes"])
        emit(RecordingReady(self.session.record, dict(info)))
