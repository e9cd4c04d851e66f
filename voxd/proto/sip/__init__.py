"""Sans-IO SIP: messages, transactions, dialogs and the user agent core."""

from .agent import UAConfig, UserAgent
from .auth import Credentials, DigestServer, authorization_for
from .dialog import ALLOW
from .errors import SipParseError
from .events import (
    ByeReceived,
    CallCancelled,
    CallEstablished,
    CallFailed,
    CallProgress,
    CallTerminated,
    Event,
    IncomingCall,
    InfoDtmf,
    OptionsProbe,
    OptionsResult,
    ReferAccepted,
    ReferFailed,
    ReferProgress,
    ReferReceived,
    ReInvite,
    ReofferAnswered,
    ReofferFailed,
)
from .headers import Headers
from .info import InfoDigit, parse_info_dtmf
from .message import (
    SipRequest,
    SipResponse,
    StreamParser,
    bad_request,
    make_response,
    parse_message,
)
from .transaction import ClientTransaction, ServerTransaction, Timers
from .uri import CSeq, NameAddr, SipUri, Via

__all__ = [
    "ALLOW", "ByeReceived", "CSeq", "CallCancelled", "CallEstablished", "CallFailed",
    "CallProgress", "CallTerminated", "ClientTransaction", "Credentials", "DigestServer",
    "Event", "Headers", "IncomingCall", "InfoDigit", "InfoDtmf", "NameAddr", "OptionsProbe", "OptionsResult",
    "ReInvite", "ReferAccepted", "ReferFailed", "ReferProgress", "ReferReceived",
    "ReofferAnswered", "ReofferFailed", "ServerTransaction", "SipParseError", "SipRequest",
    "SipResponse", "SipUri", "StreamParser", "Timers", "UAConfig", "UserAgent", "Via",
    "authorization_for", "bad_request", "make_response", "parse_info_dtmf", "parse_message",
]
