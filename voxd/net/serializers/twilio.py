"""Twilio Media Streams as a serializer.

Platform to voxd (JSON text frames): `connected`, `start` (streamSid, callSid,
customParameters; `agent` there picks the agent; mediaFormat audio/x-mulaw 8000),
`media` (base64 mu-law; timestamp in ms, as a string), `dtmf`, `mark` (echoed once
the audio queued before it has played), `stop`. voxd to platform: `media`, `mark`,
`clear`. A timestamp jump (audio the platform never got) is filled with silence, up
to MAX_GAP_FRAMES, so the caller's words keep their timing.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from voxd.call.ports import SILENCE
from voxd.core import boundedjson
from voxd.media.codecs import PCMU, Encoder
from voxd.net.serializers.base import (
    BotAudio,
    CallerAudio,
    ClearOut,
    DtmfIn,
    InFrame,
    MarkIn,
    MarkOut,
    MediaSerializer,
    OutFrame,
    ProtocolError,
    StreamStart,
    StreamStop,
)

MAX_GAP_FRAMES = 50


def parse_json_event(data: str | bytes, what: str) -> dict[str, Any]:
    """A JSON text frame with a string `event` (the shape Twilio and Telnyx share)."""
    if isinstance(data, bytes):
        raise ProtocolError(f"binary frame of {len(data)} bytes; {what} frames are JSON text")
    try:
        obj = boundedjson.loads(data)
    except ValueError as e:  # invalid, or nested beyond any media message
        raise ProtocolError(f"frame is not JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("event"), str):
        raise ProtocolError("frame is not an object with a string 'event'")
    return obj


def obj(d: dict[str, Any], key: str) -> dict[str, Any]:
    value = d.get(key)
    return value if isinstance(value, dict) else {}


def b64_payload(payload: Any) -> bytes:
    if not isinstance(payload, str):
        raise ProtocolError("media.payload is not a string")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as e:
        raise ProtocolError(f"media.payload is not base64: {e}") from None


def media_event(frame: OutFrame, enc: Encoder, key: str, stream: str) -> str | None:
    """The bot's side of a Twilio-shaped media stream (Twilio, Telnyx: they differ in the
    stream id's key): base64 audio, marks, clear; None for what the protocol lacks."""
    if isinstance(frame, BotAudio):
        payload = base64.b64encode(enc.encode(frame.frame)).decode("ascii")
        return dumps({"event": "media", key: stream, "media": {"payload": payload}})
    if isinstance(frame, MarkOut):
        return dumps({"event": "mark", key: stream, "mark": {"name": frame.name}})
    if isinstance(frame, ClearOut):
        enc.reset()
        return dumps({"event": "clear", key: stream})
    return None


def dumps(o: dict[str, Any]) -> str:
    return json.dumps(o, separators=(",", ":"))


class TwilioSerializer(MediaSerializer):
    transport_name = "twilio"
    codec = PCMU
    marks = True

    def __init__(self) -> None:
        self.stream_sid = ""
        self._dec = PCMU.decoder()
        self._enc = PCMU.encoder()
        self._next_ts: int | None = None  # media.timestamp (ms) expected next
        self.gap_frames = 0

    def deserialize(self, data: str | bytes) -> InFrame | None:
        frame = parse_json_event(data, "Media Streams")
        event = frame["event"]
        if event == "media":
            body = obj(frame, "media")
            if body.get("track", "inbound") != "inbound":
                return None
            return CallerAudio(self._media(b64_payload(body.get("payload")), body.get("timestamp")))
        if event == "start":
            return self._start(frame)
        if event == "dtmf":
            digit = obj(frame, "dtmf").get("digit")
            return DtmfIn(digit) if isinstance(digit, str) and len(digit) == 1 else None
        if event == "mark":
            name = obj(frame, "mark").get("name")
            return MarkIn(name) if isinstance(name, str) else None
        if event == "stop":
            return StreamStop()
        return None  # connected, and events newer than this code

    def _start(self, frame: dict[str, Any]) -> StreamStart:
        info = obj(frame, "start")
        params = {str(k): str(v) for k, v in obj(info, "customParameters").items()}
        fmt = obj(info, "mediaFormat")
        problem = None
        if fmt and (fmt.get("encoding") != "audio/x-mulaw" or fmt.get("sampleRate") != 8000):
            problem = f"unsupported mediaFormat {fmt}"
        sid = str(frame.get("streamSid") or info.get("streamSid") or "")
        meta = {"call_sid": str(info.get("callSid", "")), "stream_sid": sid,
                "account_sid": str(info.get("accountSid", ""))}
        return StreamStart(stream_id=sid, agent=params.get("agent"), from_uri=params.get("from", ""),
                           to_uri=params.get("to", ""), metadata=meta, parameters=params, problem=problem)

    def _media(self, ulaw: bytes, timestamp: Any) -> list:  # type: ignore[type-arg]
        try:
            ts: int | None = int(timestamp)
        except (TypeError, ValueError):
            ts = None
        out = []
        if ts is not None and self._next_ts is not None and ts > self._next_ts + 10:
            gap = min((ts - self._next_ts) // 20, MAX_GAP_FRAMES)
            self.gap_frames += gap
            out += [SILENCE] * gap
        if ts is not None:
            self._next_ts = ts + len(ulaw) // 8
        return out + self._dec.decode(ulaw)

    def started(self, start: StreamStart) -> None:
        self.stream_sid = start.stream_id

    def serialize(self, frame: OutFrame) -> str | bytes | None:
        # Media Streams has no transcript, end or DTMF messages
        return media_event(frame, self._enc, "streamSid", self.stream_sid)
