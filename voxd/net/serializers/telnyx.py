"""Telnyx media streaming (bidirectional, `stream_bidirectional_mode: rtp`) as a serializer.

Telnyx to voxd (JSON text): `connected` {version}; `start` {stream_id, start:
{call_control_id, call_session_id, from, to, custom_parameters, media_format:
{encoding, sample_rate, channels}}}; `media` {media: {track, chunk, timestamp,
payload}} with base64 RTP payloads (no headers); `dtmf` {dtmf: {digit}}; `mark`
{mark: {name}} once the audio before it has played; `error`; `stop`.
voxd to Telnyx: `media` {media: {payload}}, `mark` {mark: {name}}, `clear`.

voxd takes PCMU or PCMA at 8 kHz mono (`stream_bidirectional_codec` PCMU/PCMA) and
answers in the same codec; `agent` in custom_parameters (or ?agent= on the URL)
picks the agent.
"""

from __future__ import annotations

from typing import Any

from voxd.media import codecs
from voxd.media.codecs.base import Codec
from voxd.net.serializers.base import (
    CallerAudio,
    DtmfIn,
    InFrame,
    MarkIn,
    MediaSerializer,
    OutFrame,
    StreamStart,
    StreamStop,
)
from voxd.net.serializers.twilio import b64_payload, media_event, obj, parse_json_event

SUPPORTED = ("PCMU", "PCMA")


class TelnyxSerializer(MediaSerializer):
    transport_name = "telnyx"
    marks = True

    def __init__(self) -> None:
        self.stream_id = ""
        self._use(codecs.PCMU)
        self.errors: list[str] = []  # `error` frames Telnyx sent

    def _use(self, codec: Codec) -> None:
        self.codec = codec
        self._dec = codec.decoder()
        self._enc = codec.encoder()

    def deserialize(self, data: str | bytes) -> InFrame | None:
        frame = parse_json_event(data, "Telnyx media streaming")
        event = frame["event"]
        if event == "media":
            body = obj(frame, "media")
            if body.get("track", "inbound") != "inbound":
                return None  # with both_tracks, the outbound track is our own voice
            return CallerAudio(self._dec.decode(b64_payload(body.get("payload"))))
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
        if event == "error":
            self.errors.append(str(frame.get("payload") or frame.get("error") or frame)[:200])
        return None  # connected, error, newer events

    def _start(self, frame: dict[str, Any]) -> StreamStart:
        info = obj(frame, "start")
        params = {str(k): str(v) for k, v in obj(info, "custom_parameters").items()}
        fmt = obj(info, "media_format")
        encoding = str(fmt.get("encoding", "PCMU")).upper()
        problem = None
        if encoding not in SUPPORTED or fmt.get("sample_rate", 8000) != 8000 or fmt.get("channels", 1) != 1:
            problem = f"unsupported media_format {fmt}"
        else:
            self._use(codecs.get(encoding))
        sid = str(frame.get("stream_id") or "")
        meta = {"call_control_id": str(info.get("call_control_id", "")), "stream_id": sid,
                "call_session_id": str(info.get("call_session_id", "")), "codec": self.codec.name}
        return StreamStart(stream_id=sid, agent=params.get("agent"), from_uri=str(info.get("from", "")),
                           to_uri=str(info.get("to", "")), metadata=meta, parameters=params, problem=problem)

    def started(self, start: StreamStart) -> None:
        self.stream_id = start.stream_id

    def serialize(self, frame: OutFrame) -> str | bytes | None:
        return media_event(frame, self._enc, "stream_id", self.stream_id)
