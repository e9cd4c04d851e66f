"""Codecs by name: what a transport negotiates, looked up once.

    codec = codecs.get("PCMU")          # shared, stateless
    enc, dec = codec.encoder(), codec.decoder()   # per call: they hold filter state

G.722 and Opus (voxd.media.codecs.pyav, through PyAV) are registered the same way.
"""

from __future__ import annotations

from collections.abc import Callable

from voxd.media.codecs.base import Codec, Decoder, Encoder
from voxd.media.codecs.g711 import G711, PCMA, PCMU
from voxd.media.codecs.linear import L16
from voxd.media.codecs.pyav import G722_CODEC, OPUS_CODEC

__all__ = ["G711", "L16", "PCMA", "PCMU", "Codec", "Decoder", "Encoder", "get", "register"]

_REGISTRY: dict[str, Callable[[int], Codec]] = {
    "PCMU": lambda rate: PCMU,
    "PCMA": lambda rate: PCMA,
    "L16": L16,
    "G722": lambda rate: G722_CODEC,
    "OPUS": lambda rate: OPUS_CODEC,
}


def register(name: str, factory: Callable[[int], Codec]) -> None:
    """Make a codec known by its SDP encoding name; `factory(clock_rate)` builds it."""
    _REGISTRY[name.upper()] = factory


def get(name: str, rate: int = 8_000) -> Codec:
    """The codec called `name` (case-insensitive) at `rate`; KeyError if none is registered."""
    try:
        factory = _REGISTRY[name.upper()]
    except KeyError:
        raise KeyError(f"no codec {name!r} (known: {', '.join(sorted(_REGISTRY))})") from None
    return factory(rate)
