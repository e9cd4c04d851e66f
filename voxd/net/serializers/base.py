"""Websocket media protocols as serializers (the pipecat `serializers/base_serializer.py`
shape): `deserialize(data) -> Frame | None` turns one websocket message into a typed
inbound frame, `serialize(frame) -> str | bytes | None` turns an outbound frame into
one message (None: this protocol has no such message). One websocket leg
(`voxd.net.ws_leg`) runs every protocol; a platform is a serializer of ~100 lines.

A serializer is per call: it may keep the stream's id, sequence numbers and codec state.
"""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any

from voxd.call.ports import AudioFrame
from voxd.core.calllog import Turn
from voxd.media.codecs.base import Codec
from voxd.net.leg import Pacing


class ProtocolError(Exception):
    """The peer sent something that is not its protocol (ends the call: protocol_error)."""


# ---------------------------------------------------------------- peer -> voxd
@dataclass(frozen=True)
class StreamStart:
    """The stream is up and says who it is for."""

    stream_id: str = ""
    agent: str | None = None
    from_uri: str = ""
    to_uri: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    parameters: dict[str, str] = field(default_factory=dict)  # the platform's custom parameters
    problem: str | None = None  # why voxd cannot take this stream (an unsupported media format)


@dataclass(frozen=True)
class CallerAudio:
    frames: list[AudioFrame]


@dataclass(frozen=True)
class DtmfIn:
    digit: str


@dataclass(frozen=True)
class MarkIn:
    name: str


@dataclass(frozen=True)
class StreamStop:
    pass


@dataclass(frozen=True)
class Malformed:
    """A message the protocol tolerates: answered with an error, the call goes on."""

    message: str


InFrame = StreamStart | CallerAudio | DtmfIn | MarkIn | StreamStop | Malformed


# ---------------------------------------------------------------- voxd -> peer
@dataclass(frozen=True)
class Started:
    call_id: str
    agent: str


@dataclass(frozen=True)
class BotAudio:
    frame: AudioFrame


@dataclass(frozen=True)
class MarkOut:
    name: str


@dataclass(frozen=True)
class ClearOut:
    pass


@dataclass(frozen=True)
class DtmfOut:
    digits: str


@dataclass(frozen=True)
class TransferOut:
    """transfer_call on a stream whose client owns the telephony: it carries the transfer out."""

    target: str


@dataclass(frozen=True)
class TranscriptOut:
    turn: Turn


@dataclass(frozen=True)
class EndOut:
    reason: str


@dataclass(frozen=True)
class ErrorOut:
    message: str


OutFrame = Started | BotAudio | MarkOut | ClearOut | DtmfOut | TransferOut | TranscriptOut | EndOut | ErrorOut


class MediaSerializer(abc.ABC):
    transport_name: str
    codec: Codec
    inbound: Pacing = "arrival"  # the platform sends 20 ms every 20 ms
    marks = False  # echoes marks once the audio before them has played
    sends_start = True  # the stream's first frames say who it is for (else: the URL does)
    can_send_dtmf = False
    can_send_transfer = False  # a `transfer` event the client acts on (voxd's plain protocol)

    @abc.abstractmethod
    def deserialize(self, data: str | bytes) -> InFrame | None:
        """One websocket message; None for messages that mean nothing to voxd.
        Raises ProtocolError for anything that is not the protocol."""

    @abc.abstractmethod
    def serialize(self, frame: OutFrame) -> str | bytes | None: ...

    def started(self, start: StreamStart) -> None:  # noqa: B027 - optional hook
        """The stream's start was accepted (keep its id for outbound messages)."""
