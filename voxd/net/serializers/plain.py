"""voxd's plain websocket media protocol as a serializer (see voxd.net.ws_media).

Binary frames are 16-bit little-endian mono PCM at the URL's sample_rate, any length
in, 20 ms out; control messages are JSON objects with a `type`.
"""

from __future__ import annotations

import json

from voxd.core import boundedjson
from voxd.media.codecs import L16
from voxd.net.serializers.base import (
    BotAudio,
    CallerAudio,
    ClearOut,
    DtmfIn,
    DtmfOut,
    EndOut,
    ErrorOut,
    InFrame,
    Malformed,
    MediaSerializer,
    OutFrame,
    Started,
    StreamStop,
    TranscriptOut,
    TransferOut,
)


class PlainSerializer(MediaSerializer):
    transport_name = "websocket"
    inbound = "clock"  # any length, as fast as the client likes: the leg paces it
    sends_start = False
    can_send_dtmf = True
    can_send_transfer = True

    def __init__(self, rate: int) -> None:
        self.rate = rate
        self.codec = L16(rate)
        self._dec = self.codec.decoder()
        self._enc = self.codec.encoder()

    def deserialize(self, data: str | bytes) -> InFrame | None:
        if isinstance(data, bytes):
            return CallerAudio(self._dec.decode(data))
        try:
            obj = boundedjson.loads(data)
        except ValueError:  # invalid, or nested beyond any media message
            obj = None
        kind = obj.get("type") if isinstance(obj, dict) else None
        if kind == "dtmf" and isinstance(obj, dict) and isinstance(obj.get("digit"), str) and obj["digit"]:
            return DtmfIn(obj["digit"][:1])
        if kind == "stop":
            return StreamStop()
        return Malformed("unknown or malformed message")

    def serialize(self, frame: OutFrame) -> str | bytes | None:
        if isinstance(frame, BotAudio):
            return self._enc.encode(frame.frame) or None
        if isinstance(frame, Started):
            return json.dumps({"type": "started", "call_id": frame.call_id, "agent": frame.agent,
                               "sample_rate": self.rate})
        if isinstance(frame, ClearOut):
            return json.dumps({"type": "clear"})
        if isinstance(frame, TranscriptOut):
            t = frame.turn
            return json.dumps({"type": "transcript", "speaker": t.speaker,
                               "text": t.heard_text if t.interrupted else t.text, "interrupted": t.interrupted})
        if isinstance(frame, DtmfOut):
            return json.dumps({"type": "dtmf_out", "digits": frame.digits})
        if isinstance(frame, TransferOut):  # the integrator's telephony carries it out
            return json.dumps({"type": "transfer", "target": frame.target})
        if isinstance(frame, EndOut):
            return json.dumps({"type": "end", "reason": frame.reason})
        if isinstance(frame, ErrorOut):
            return json.dumps({"type": "error", "message": frame.message})
        return None  # no marks
