"""Attended transfer in the sans-IO user agent: the Refer-To that replaces a dialog we
placed, and an INVITE with Replaces arriving for a dialog we have (RFC 3891 §3)."""

from __future__ import annotations

import pytest

from voxd.proto.sip import IncomingCall, parse_message
from voxd.proto.sip.replaces import Replaces, replaces_in_refer_to
from voxd.proto.sip.uri import SipUri

from .pair import UAS_ADDR, Pair
from .test_dialogs import OFFER, dial, established


def test_refer_to_names_the_dialog_as_its_peer_sees_it() -> None:
    pair = Pair()
    call_id = established(pair)  # the uac placed it: the uas is the transfer target here
    uri = SipUri.parse(pair.uac.refer_to_replacing(call_id))
    ours, theirs = pair.uac.calls[call_id], pair.uas.calls[call_id]
    assert (uri.user, uri.host, uri.port) == ("agent", "127.0.0.1", 5060)  # the target's Contact
    rep = replaces_in_refer_to(uri)
    assert rep is not None and rep.call_id == call_id
    assert (rep.to_tag, rep.from_tag) == (ours.remote.tag, ours.local_tag)
    # the target matches it against its own side of the dialog
    assert rep.matches(call_id, local_tag=theirs.local_tag, remote_tag=theirs.remote.tag or "")
    with pytest.raises(KeyError):
        pair.uac.refer_to_replacing("nope")


def _invite_replacing(pair: Pair, value: str | None, *more: str) -> list[IncomingCall]:
    headers = [("Replaces", value)] if value is not None else []
    headers += [("Replaces", v) for v in more]
    before = len(pair.of(IncomingCall))
    pair.uac.invite("sip:agent@127.0.0.1:5060", pair.now, sdp=OFFER, peer=UAS_ADDR, headers=headers)
    pair.flush()
    return pair.of(IncomingCall)[before:]


def _last_status(pair: Pair) -> int:
    answers = [parse_message(s.data) for s in pair.wire if s.src == UAS_ADDR and s.label.endswith("INVITE")]
    return int(answers[-1].status)  # type: ignore[union-attr]


def test_invite_with_replaces_matching_a_dialog_is_offered_with_it() -> None:
    pair = Pair()
    call_id = established(pair)
    theirs = pair.uas.calls[call_id]
    value = Replaces(call_id, theirs.local_tag, theirs.remote.tag or "").serialize()
    (incoming,) = _invite_replacing(pair, value)
    assert incoming.replaces == call_id and incoming.call_id != call_id
    assert _last_status(pair) == 100
    (plain,) = _invite_replacing(pair, None)
    assert plain.replaces is None


@pytest.mark.parametrize("swap", [False, True])
def test_invite_with_replaces_naming_no_dialog_gets_481(swap: bool) -> None:
    pair = Pair()
    call_id = established(pair)
    theirs = pair.uas.calls[call_id]
    local, remote = theirs.local_tag, theirs.remote.tag or ""
    if swap:  # the tags as the wrong side sees them
        local, remote = remote, local
    value = Replaces(call_id if swap else "other@host", local, remote).serialize()
    assert _invite_replacing(pair, value) == []
    assert _last_status(pair) == 481
    assert call_id in pair.uas.calls  # the dialog named (or not) is untouched


def test_early_only_replaces_of_a_confirmed_dialog_gets_486() -> None:
    pair = Pair()
    call_id = established(pair)
    theirs = pair.uas.calls[call_id]
    value = Replaces(call_id, theirs.local_tag, theirs.remote.tag or "", early_only=True).serialize()
    assert _invite_replacing(pair, value) == []
    assert _last_status(pair) == 486


@pytest.mark.parametrize("values", [("nocolon;to-tag=a",), ("a@b;to-tag=x;from-tag=y", "c@d;to-tag=x;from-tag=y")])
def test_malformed_or_repeated_replaces_gets_400(values: tuple[str, ...]) -> None:
    pair = Pair()
    established(pair)
    assert _invite_replacing(pair, values[0], *values[1:]) == []
    assert _last_status(pair) == 400


def test_require_replaces_is_supported() -> None:
    pair = Pair()
    call_id = dial(pair)
    assert pair.uas.calls[call_id]  # a plain INVITE still works
    before = len(pair.of(IncomingCall))
    pair.uac.invite("sip:agent@127.0.0.1:5060", pair.now, sdp=OFFER, peer=UAS_ADDR,
                    headers=[("Require", "replaces")])
    pair.flush()
    assert len(pair.of(IncomingCall)) == before + 1
