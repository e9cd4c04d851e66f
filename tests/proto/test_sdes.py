"""SDES a=crypto lines (RFC 4568) and the answer a trunk's srtp policy gives an offer."""

from __future__ import annotations

import pytest

from voxd.proto.sdes import CryptoAttribute, SdesError, answer_keys, new_crypto, offered
from voxd.proto.sdp import SessionDescription

RFC_EXAMPLE = "1 AES_CM_128_HMAC_SHA1_80 inline:PS1uQCVeeCFCanVmcjkpPywjNWhcYD0mXXtxaVBR|2^20|1:4"
KEY_32 = "inline:NzB4d1BINUAvLEw6UzF3WSJ+PSdFcGdUJShpX1Zj"


def media(proto: str, *cryptos: str) -> object:
    lines = ["v=0", "o=- 1 1 IN IP4 127.0.0.1", "s=-", "c=IN IP4 127.0.0.1", "t=0 0",
             f"m=audio 4000 {proto} 0", "a=rtpmap:0 PCMU/8000", *[f"a=crypto:{c}" for c in cryptos]]
    return SessionDescription.parse(("\r\n".join(lines) + "\r\n").encode()).media[0]


def test_rfc_4568_example_round_trips() -> None:
    attr = CryptoAttribute.parse(RFC_EXAMPLE)
    assert (attr.tag, attr.suite, len(attr.key_salt)) == (1, "AES_CM_128_HMAC_SHA1_80", 30)
    assert attr.keys[0].lifetime == 1 << 20 and attr.keys[0].mki == (1, 4)
    assert attr.serialize() == RFC_EXAMPLE
    assert CryptoAttribute.parse(attr.serialize()) == attr


@pytest.mark.parametrize("bad", [
    "", "1 AES_CM_128_HMAC_SHA1_80", "x AES_CM_128_HMAC_SHA1_80 " + KEY_32, "1 F8_128_HMAC_SHA1_80 " + KEY_32,
    "1 AES_CM_128_HMAC_SHA1_80 inline:c2hvcnQ=", "1 AES_CM_128_HMAC_SHA1_80 uri:http://x",
    "1 AES_CM_128_HMAC_SHA1_80 inline:!!!!", "1 AES_CM_128_HMAC_SHA1_80 " + KEY_32 + "|2^99",
    "1 AES_CM_128_HMAC_SHA1_80 " + KEY_32 + "|1:x", "1 AES_CM_128_HMAC_SHA1_80 " + KEY_32 + "|1|2|3",
])
def test_bad_lines_raise_sdes_error(bad: str) -> None:
    with pytest.raises(SdesError):
        CryptoAttribute.parse(bad)


def test_offered_skips_unusable_and_weakened_lines() -> None:
    m = media("RTP/SAVP", "1 F8_128_HMAC_SHA1_80 " + KEY_32, "2 AES_CM_128_HMAC_SHA1_80 " + KEY_32 + " UNENCRYPTED_SRTP",
              "3 AES_CM_128_HMAC_SHA1_32 " + KEY_32)
    assert [c.tag for c in offered(m)] == [3]  # type: ignore[arg-type]


def test_policies() -> None:
    savp = media("RTP/SAVP", "1 AES_CM_128_HMAC_SHA1_32 " + KEY_32, "2 AES_CM_128_HMAC_SHA1_80 " + KEY_32)
    keys = answer_keys(savp, "optional")  # type: ignore[arg-type]
    assert keys is not None and keys.suite == "AES_CM_128_HMAC_SHA1_80" and keys.local.tag == 2  # our preference
    assert keys.local.key_salt != keys.remote.key_salt and len(keys.local.key_salt) == 30
    assert answer_keys(savp, "required") is not None  # type: ignore[arg-type]
    with pytest.raises(SdesError, match="policy is off"):
        answer_keys(savp, "off")  # type: ignore[arg-type]
    avp = media("RTP/AVP")
    assert answer_keys(avp, "optional") is None and answer_keys(avp, "off") is None  # type: ignore[arg-type]
    with pytest.raises(SdesError, match="required"):
        answer_keys(avp, "required")  # type: ignore[arg-type]
    with pytest.raises(SdesError):
        answer_keys(media("RTP/SAVP"), "optional")  # type: ignore[arg-type]


def test_new_keys_are_random() -> None:
    assert new_crypto().key_salt != new_crypto().key_salt
    assert CryptoAttribute.parse(new_crypto(7).serialize()).tag == 7


def test_offer_and_accept_per_policy() -> None:
    from voxd.proto import secure_sdp
    from voxd.proto.sdes import mask_keys

    plain, none = secure_sdp.offer("127.0.0.1", 4000, policy="off")
    assert none == [] and b"crypto" not in plain.serialize() and plain.media[0].proto == "RTP/AVP"
    req, ours = secure_sdp.offer("127.0.0.1", 4000, policy="required")
    assert req.media[0].proto == "RTP/SAVP" and [c.tag for c in ours] == [1, 2]
    opt, ours_opt = secure_sdp.offer("127.0.0.1", 4000, policy="optional")
    assert opt.media[0].proto == "RTP/AVP" and len(ours_opt) == 2
    # the callee's answer is our offer answered by the same code (its own keys)
    answer = secure_sdp.answer(req, "127.0.0.1", 5000, policy="optional")
    assert answer.srtp is not None and answer.sdp.media[0].proto == "RTP/SAVP"
    neg = secure_sdp.accept_answer(req, ours, answer.sdp, policy="required")
    assert neg.srtp is not None and neg.srtp.local == ours[0] and neg.srtp.remote == answer.srtp.local
    # a plain answer: fine under optional, refused under required; a tag we never offered is refused
    plain_answer = secure_sdp.answer(plain, "127.0.0.1", 5000, policy="off").sdp
    assert secure_sdp.accept_answer(opt, ours_opt, plain_answer, policy="optional").srtp is None
    with pytest.raises(secure_sdp.SrtpPolicyError):
        secure_sdp.accept_answer(req, ours, plain_answer, policy="required")
    forged = SessionDescription.parse(answer.sdp.serialize().replace(b"a=crypto:1 ", b"a=crypto:9 "))
    with pytest.raises(secure_sdp.SrtpPolicyError, match="did not offer"):
        secure_sdp.accept_answer(req, ours, forged, policy="required")
    # a re-INVITE's answer keeps the key we already send with
    again = secure_sdp.answer(req, "127.0.0.1", 5000, policy="required", local=answer.srtp.local)
    assert again.srtp is not None and again.srtp.local.key_salt == answer.srtp.local.key_salt
    # an SRTP-only offer under off, a plain one under required: 488
    with pytest.raises(secure_sdp.SrtpPolicyError):
        secure_sdp.answer(req, "127.0.0.1", 5000, policy="off")
    with pytest.raises(secure_sdp.SrtpPolicyError):
        secure_sdp.answer(plain, "127.0.0.1", 5000, policy="required")
    text = req.serialize().decode()
    assert "inline:" in text and ours[0].keys[0].serialize()[7:] not in mask_keys(text)
    assert mask_keys(text).count("inline:***") == 2
