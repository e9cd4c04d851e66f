"""The dialog's transition table: every move the user agent makes is in it."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from voxd.proto.sip.dialog_state import TRANSITIONS, CallState, DialogEvent, DialogStateError, advance


@dataclass
class D:
    state: CallState


def test_uas_and_uac_paths_and_ending_from_anywhere() -> None:
    d = D(CallState.INCOMING)
    assert advance(d, DialogEvent.SENT_2XX) is CallState.ANSWERED
    assert advance(d, DialogEvent.GOT_ACK) is CallState.CONFIRMED
    assert advance(d, DialogEvent.ENDED) is CallState.TERMINATED
    assert advance(D(CallState.OUTGOING), DialogEvent.GOT_2XX) is CallState.CONFIRMED
    for state in CallState:
        assert TRANSITIONS[state][DialogEvent.ENDED] is CallState.TERMINATED


@pytest.mark.parametrize(("state", "event"), [(CallState.INCOMING, DialogEvent.GOT_ACK),
                                              (CallState.CONFIRMED, DialogEvent.SENT_2XX),
                                              (CallState.TERMINATED, DialogEvent.GOT_2XX),
                                              (CallState.OUTGOING, DialogEvent.SENT_2XX)])
def test_a_move_outside_the_table_is_refused(state: CallState, event: DialogEvent) -> None:
    d = D(state)
    with pytest.raises(DialogStateError):
        advance(d, event)
    assert d.state is state
