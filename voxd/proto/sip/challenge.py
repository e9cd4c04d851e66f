"""Answering 401/407 on any request voxd sends (RFC 3261 §22.2, §22.3): the initial
INVITE, re-INVITE/UPDATE, BYE, INFO, REFER. Credentials are remembered per Call-ID
(bounded), so a BYE sent after the dialog ended is answered too."""

from __future__ import annotations

from collections import OrderedDict

from .auth import Credentials, authorization_for, parse_auth_params
from .dialog import new_branch
from .headers import Headers
from .message import SipRequest, SipResponse
from .uri import Via

MAX_REMEMBERED = 4096


class CredentialBook:
    """Per-call credentials (outbound trunks), oldest forgotten first beyond the bound."""

    def __init__(self, limit: int = MAX_REMEMBERED) -> None:
        self._by_call: OrderedDict[str, Credentials] = OrderedDict()
        self._limit = limit

    def __len__(self) -> int:
        return len(self._by_call)

    def remember(self, call_id: str, credentials: Credentials) -> None:
        self._by_call[call_id] = credentials
        self._by_call.move_to_end(call_id)
        while len(self._by_call) > self._limit:
            self._by_call.popitem(last=False)

    def get(self, call_id: str) -> Credentials | None:
        return self._by_call.get(call_id)

    def forget(self, call_id: str) -> None:
        self._by_call.pop(call_id, None)


def answer_header(status: int) -> tuple[str, str]:
    """(challenge header, answer header) for a 401 or a 407."""
    return ("WWW-Authenticate", "Authorization") if status == 401 else ("Proxy-Authenticate", "Proxy-Authorization")


def retry_request(request: SipRequest, response: SipResponse, credentials: Credentials,
                  cseq: int) -> SipRequest | None:
    """``request`` again with a new branch, CSeq ``cseq`` and an answer to the challenge in
    ``response``; None when it cannot be answered or our last answer was refused (an
    answer of the same kind was already sent and the challenge is not ``stale``)."""
    if response.status not in (401, 407):
        return None
    challenge_name, answer_name = answer_header(response.status)
    challenges = sorted(response.headers.get_all(challenge_name),
                        key=lambda c: 0 if "SHA-256" in c.upper() else 1)
    answered_before = answer_name in request.headers
    for challenge in challenges:
        if answered_before and parse_auth_params(challenge).get("stale", "").lower() != "true":
            return None
        value = authorization_for(challenge, credentials, request.method, request.uri)
        if value is None:
            continue
        headers = Headers()
        for name, old in request.headers:
            if name == answer_name:
                continue  # replaced by the new answer; the other kind (a proxy's) is kept
            if name == "Via" and "Via" not in headers:
                via = Via.parse(old.split(",")[0])
                via.params["branch"] = new_branch()
                old = via.serialize()
            elif name == "CSeq":
                old = f"{cseq} {request.method}"
            headers.add(name, old)
        headers.add(answer_name, value)
        return SipRequest(request.method, request.uri, headers, request.body)
    return None
