"""Twilio's REST API, for what a Media Stream cannot do itself: transfer the call.

``transfer_call`` on a Twilio call updates the call (``POST /2010-04-01/Accounts/{AccountSid}/
Calls/{CallSid}.json`` with a ``Twiml`` parameter, HTTP basic auth with the account SID and
auth token), replacing its ``<Connect><Stream>`` with a ``<Dial>`` to the target: Twilio
ends the stream (``stop``) and dials. The request goes through the egress policy (use
``providers``), so only api.twilio.com, or a destination ``egress.allow`` names, is reached.
Outgoing DTMF has no such update that keeps the stream, so ``send_dtmf`` stays unavailable.
"""

from __future__ import annotations

import base64
import logging
import re
from dataclasses import dataclass, field
from xml.sax.saxutils import escape

import aiohttp

from voxd.core.egress import EgressPolicy, default_policy
from voxd.core.egress_http import egress_session

log = logging.getLogger("voxd.twilio")

DEFAULT_API = "https://api.twilio.com"
SID = re.compile(r"^(AC|CA)[0-9a-fA-F]{32}$")
PHONE = re.compile(r"^\+?[0-9]{3,15}$")
TIMEOUT_S = 10.0


def dial_twiml(target: str) -> str:
    """``<Dial>`` TwiML for a SIP URI (``<Sip>``), a phone number (``<Number>``) or a client."""
    t = target.strip()
    if t.lower().startswith(("sip:", "sips:")):
        inner = f"<Sip>{escape(t)}</Sip>"
    elif t.lower().startswith("tel:") or PHONE.match(t):
        inner = f"<Number>{escape(t.removeprefix('tel:'))}</Number>"
    else:
        inner = f"<Client>{escape(t.removeprefix('client:'))}</Client>"
    return f'<?xml version="1.0" encoding="UTF-8"?><Response><Dial>{inner}</Dial></Response>'


@dataclass(frozen=True)
class CallUpdater:
    """Redirects one Twilio call (its account and call SIDs from the stream's ``start``)."""

    account_sid: str
    call_sid: str
    auth_token: str = field(repr=False)
    api_base_url: str = DEFAULT_API
    policy: EgressPolicy = field(default_factory=default_policy)

    @classmethod
    def for_stream(cls, account_sid: str, call_sid: str, auth_token: str, api_base_url: str,
                   policy: EgressPolicy | None) -> CallUpdater | None:
        """None unless the token is set and both SIDs look like Twilio's."""
        if not auth_token or not SID.match(account_sid) or not SID.match(call_sid):
            return None
        return cls(account_sid, call_sid, auth_token, api_base_url.rstrip("/") or DEFAULT_API,
                   policy or default_policy())

    @property
    def url(self) -> str:
        return f"{self.api_base_url}/2010-04-01/Accounts/{self.account_sid}/Calls/{self.call_sid}.json"

    def _basic_auth(self) -> str:
        return "Basic " + base64.b64encode(f"{self.account_sid}:{self.auth_token}".encode()).decode()

    async def dial(self, target: str) -> bool:
        """True when Twilio accepted the update (2xx)."""
        try:
            async with egress_session(self.policy, "providers") as http, http.post(
                self.url, data={"Twiml": dial_twiml(target)}, allow_redirects=False,
                headers={"Authorization": self._basic_auth()},
                timeout=aiohttp.ClientTimeout(total=TIMEOUT_S),
            ) as resp:
                if 200 <= resp.status < 300:
                    return True
                log.warning("twilio call %s: update refused: HTTP %d %s", self.call_sid, resp.status,
                            (await resp.text())[:200])
        except Exception as e:  # refused by egress, connection errors, timeouts
            log.warning("twilio call %s: update failed: %s", self.call_sid, type(e).__name__)
        return False
