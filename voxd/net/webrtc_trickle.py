"""Trickle ICE for browser calls (RFC 8838): the page sends its offer at once and its
ICE candidates as it finds them, instead of waiting for gathering to finish.

`POST /webrtc/offer` answers with a per-call `ice.token`; the page then posts
`{"candidates": [{"candidate": "candidate:...", "sdpMid": "0", "sdpMLineIndex": 0}],
"done": false}` to `ice.candidates_url` with that token as a bearer, and `"done": true`
(or an empty candidate, as browsers signal it) at the end of gathering. voxd's own
candidates are all in its answer (aiortc gathers before answering).
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiortc import RTCIceCandidate, RTCPeerConnection
from aiortc.sdp import candidate_from_sdp

from voxd.net.http_errors import bad_request, json_body

TRICKLE_KEY: web.AppKey[Trickle] = web.AppKey("voxd.webrtc.trickle")
MAX_CANDIDATES = 64  # per call: a browser offers a handful per interface and server


@dataclass
class _Peer:
    pc: RTCPeerConnection
    token: str
    metadata: dict[str, Any]  # the call record's: how many candidates trickled in
    added: int = 0
    done: bool = False


class Trickle:
    """The calls that may still receive candidates, by call id."""

    def __init__(self) -> None:
        self._peers: dict[str, _Peer] = {}

    def open(self, call_id: str, pc: RTCPeerConnection, metadata: dict[str, Any]) -> dict[str, str]:
        """Register a call; returns the `ice` block of the offer's answer."""
        token = secrets.token_urlsafe(24)
        self._peers[call_id] = _Peer(pc, token, metadata)
        return {"candidates_url": f"/webrtc/calls/{call_id}/candidates", "token": token}

    def close(self, call_id: str) -> None:
        self._peers.pop(call_id, None)

    def remote_candidates(self, call_id: str) -> list[RTCIceCandidate]:
        """What the call's ICE agent knows of the page's candidates (diagnostics, tests)."""
        peer = self._peers.get(call_id)
        if peer is None:
            return []
        out: list[RTCIceCandidate] = []
        for t in peer.pc.getTransceivers():
            out += t.receiver.transport.transport.getRemoteCandidates()
        return out

    async def post(self, request: web.Request) -> web.Response:
        peer = self._peers.get(request.match_info["call_id"])
        if peer is None:
            raise web.HTTPNotFound(text="no such call, or it has ended")
        header = request.headers.get("Authorization", "")
        given = header[7:].strip() if header.lower().startswith("bearer ") else ""
        if not hmac.compare_digest(given.encode(), peer.token.encode()):
            raise web.HTTPForbidden(text="send the call's ice.token from the offer's answer as a bearer token")
        body = await json_body(request)
        if not isinstance(body, dict) or not isinstance(body.get("candidates", []), list):
            raise bad_request('expected {"candidates": [...], "done": false}')
        entries: list[Any] = body.get("candidates", [])
        done = body.get("done", False) is True
        parsed: list[RTCIceCandidate] = []
        for i, entry in enumerate(entries):
            cand = _candidate(entry, i)
            if cand is None:
                done = True  # an empty candidate string is the browser's end-of-candidates
            else:
                parsed.append(cand)
        if peer.done and (parsed or done):
            raise web.HTTPConflict(text="end-of-candidates was already signalled for this call")
        if peer.added + len(parsed) > MAX_CANDIDATES:
            raise bad_request(f"too many candidates (at most {MAX_CANDIDATES} per call)")
        for cand in parsed:
            await peer.pc.addIceCandidate(cand)
        peer.added += len(parsed)
        peer.metadata["ice_candidates_trickled"] = peer.added
        if done:
            peer.done = True
            await peer.pc.addIceCandidate(None)
        return web.Response(status=204)


def _candidate(entry: Any, index: int) -> RTCIceCandidate | None:
    """One candidate from the page, as RTCIceCandidate.toJSON() gives it; None for the
    empty end-of-candidates one. Raises 400 naming the entry."""
    where = f"candidates[{index}]"
    if not isinstance(entry, dict) or not isinstance(entry.get("candidate"), str):
        raise bad_request(f'{where}: expected {{"candidate": "candidate:...", "sdpMid": "0"}}')
    line = entry["candidate"].strip()
    if not line:
        return None
    if line.startswith("a="):
        line = line[2:]
    if line.startswith("candidate:"):
        line = line[len("candidate:"):]
    bits = line.split()
    if len(bits) < 8 or bits[6] != "typ" or bits[2].lower() not in ("udp", "tcp"):
        raise bad_request(f"{where}: not an ICE candidate line: {entry['candidate'][:120]!r}")
    try:
        cand = candidate_from_sdp(line)
    except (ValueError, IndexError, AssertionError):
        raise bad_request(f"{where}: not an ICE candidate line: {entry['candidate'][:120]!r}") from None
    mid, mline = entry.get("sdpMid"), entry.get("sdpMLineIndex")
    if (mid is not None and not isinstance(mid, str)) or (mline is not None and not isinstance(mline, int)):
        raise bad_request(f"{where}: sdpMid must be a string and sdpMLineIndex an integer")
    if mid is None and mline is None:
        mline = 0  # a single-transport (BUNDLE) call: the first m-line
    cand.sdpMid, cand.sdpMLineIndex = mid, mline
    return cand
