"""Sans-IO wire protocols for telephony. Nothing here does I/O or imports asyncio.

- :mod:`voxd.proto.sip` -- SIP messages, transactions, dialogs, the ``UserAgent``
- :mod:`voxd.proto.sdp` / :mod:`voxd.proto.negotiate` -- SDP and offer/answer
- :mod:`voxd.proto.rtp` / :mod:`voxd.proto.rtcp` / :mod:`voxd.proto.jitter` -- media transport
- :mod:`voxd.proto.g711` -- mu-law / A-law
- :mod:`voxd.proto.rfc4733` -- telephone-event DTMF in and out
"""
