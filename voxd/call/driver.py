"""Clocks a call session from an audio source: the transport of the WAV harness,
tests and benchmarks.

`virtual=True` runs on a virtual media clock: after every 20 ms frame it waits
until the session has no model work in flight, so a 30-second call runs in
milliseconds with fake engines and timing decisions are exact to the frame.
`virtual=False` paces frames in real time on a steady clock, as a transport does.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from voxd.call.session import CallSession
from voxd.media.audio import FRAME_BYTES, SILENCE_FRAME
from voxd.media.frame import AudioFrame

FRAME_S = 0.02


@dataclass
class DriveResult:
    bot_audio: bytearray = field(default_factory=bytearray)
    frames: int = 0
    # per frame: True if the bot produced audio in that frame
    bot_active: list[bool] = field(default_factory=list)


def frames_of(pcm: bytes) -> Iterator[bytes]:
    for i in range(0, len(pcm) - FRAME_BYTES + 1, FRAME_BYTES):
        yield pcm[i : i + FRAME_BYTES]
    rest = len(pcm) % FRAME_BYTES
    if rest:
        yield pcm[-rest:] + bytes(FRAME_BYTES - rest)


async def drive(
    session: CallSession,
    caller: Iterable[bytes],
    *,
    dtmf: Iterable[tuple[float, str]] = (),
    virtual: bool = True,
    tail_s: float = 1.0,
    max_s: float = 600.0,
    start: bool = True,
) -> DriveResult:
    """Feed `caller` frames, then silence until the bot has finished and `tail_s`
    of quiet has passed (or the call ended)."""
    res = DriveResult()
    digits = sorted(dtmf)
    loop = asyncio.get_running_loop()
    next_tick = loop.time()
    if start:
        await session.start()
        if virtual:
            await session.wait_idle()
    source = iter(caller)
    quiet = 0.0
    exhausted = False
    while not session.closed and res.frames * FRAME_S < max_s:
        t = res.frames * FRAME_S
        while digits and digits[0][0] <= t:
            session.feed_dtmf(digits.pop(0)[1], source="harness")
        frame = None if exhausted else next(source, None)
        if frame is None:
            exhausted = True
            frame = SILENCE_FRAME
        session.feed_audio(AudioFrame(frame))
        out = session.next_frame()
        res.bot_active.append(out is not None)
        res.bot_audio += out.pcm if out is not None else SILENCE_FRAME
        res.frames += 1
        if virtual:
            await asyncio.sleep(0)  # let woken tasks run before checking for work
            await session.wait_idle()
        else:
            next_tick += FRAME_S
            await asyncio.sleep(max(0.0, next_tick - loop.time()))
        if exhausted and not digits:
            # a reply still being thought out is not quiet (a slow model's first word may be seconds away)
            busy = out is not None or session.replying or session.turns.capturing
            quiet = 0.0 if busy else quiet + FRAME_S
            if quiet >= tail_s:
                break
    return res
