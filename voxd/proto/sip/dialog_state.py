"""A call's dialog states and every transition between them, in one table
(the h11 `_state.py` habit): the user agent says what happened, `advance` looks the
move up, and a move the table does not allow is a bug raised at once rather than a
state written from some corner of the code.

    UAS:  INCOMING --sent 2xx--> ANSWERED --got ACK--> CONFIRMED
    UAC:  OUTGOING --got 2xx--> CONFIRMED
    any state --ended--> TERMINATED
"""

from __future__ import annotations

import enum
from typing import Protocol


class CallState(enum.Enum):
    INCOMING = "incoming"  # UAS: INVITE received, no final response yet
    OUTGOING = "outgoing"  # UAC: INVITE sent, no final response yet
    ANSWERED = "answered"  # UAS: 2xx sent, waiting for ACK
    CONFIRMED = "confirmed"
    TERMINATED = "terminated"


class DialogEvent(enum.Enum):
    SENT_2XX = "sent 2xx"  # we answered the INVITE
    GOT_ACK = "got ACK"  # the ACK for our 2xx
    GOT_2XX = "got 2xx"  # the callee answered our INVITE
    ENDED = "ended"  # BYE either way, CANCEL, a failure, a timeout


S, E = CallState, DialogEvent
TRANSITIONS: dict[CallState, dict[DialogEvent, CallState]] = {
    S.INCOMING: {E.SENT_2XX: S.ANSWERED, E.ENDED: S.TERMINATED},
    S.OUTGOING: {E.GOT_2XX: S.CONFIRMED, E.ENDED: S.TERMINATED},
    S.ANSWERED: {E.GOT_ACK: S.CONFIRMED, E.ENDED: S.TERMINATED},
    S.CONFIRMED: {E.ENDED: S.TERMINATED},
    S.TERMINATED: {E.ENDED: S.TERMINATED},
}


class DialogStateError(ValueError):
    """A transition the table does not allow (a bug in the user agent, not the peer)."""


class HasState(Protocol):
    state: CallState


def advance(call: HasState, event: DialogEvent) -> CallState:
    """Move `call` on `event`; returns the new state."""
    try:
        new = TRANSITIONS[call.state][event]
    except KeyError:
        raise DialogStateError(f"dialog cannot go from {call.state.value} on {event.value}") from None
    call.state = new
    return new
