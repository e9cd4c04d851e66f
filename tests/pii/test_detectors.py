"""The pure detectors of voxd/core/pii.py: each kind, its near misses, spoken digits,
and the checks a custom pattern must pass before it is used."""

from __future__ import annotations

import pytest

from voxd.core.pii import (
    CUSTOM_SLICE,
    CustomPattern,
    OrgRedaction,
    PatternError,
    PiiRedactor,
    Redaction,
    luhn_ok,
    ssn_ok,
)

R = PiiRedactor()


def test_luhn() -> None:
    assert luhn_ok("4111111111111111") and luhn_ok("378282246310005") and luhn_ok("6011111111111117")
    assert not luhn_ok("4111111111111112") and not luhn_ok("1234567890123456")


@pytest.mark.parametrize("said", [
    "4111 1111 1111 1111", "4111-1111-1111-1111", "4111111111111111", "5555 5555 5555 4444",
    "3782 822463 10005",  # Amex grouping 4-6-5
    "four one one one one one one one one one one one one one one one",
    "four one one one, one one one one, one one one one, one one one one",
    "Four One One One 1111 one one one one 1111",  # STT mixing words and digits
])
def test_cards_written_and_spoken(said: str) -> None:
    assert R.text(f"my card is {said} thanks") == "my card is [card] thanks"


@pytest.mark.parametrize("digits", [
    "4111 1111 1111 1112",  # one digit off: fails Luhn
    "1234 5678 9012 3456", "1234567890123456",
    "four one one one one one one one one one one one one one one two",
    "0000 0000 0000 0000",  # passes Luhn, but no card starts with 0
])
def test_digit_strings_failing_luhn_stay(digits: str) -> None:
    assert R.text(f"the reference is {digits}") == f"the reference is {digits}"


def test_a_card_followed_by_its_expiry_loses_the_card_only() -> None:
    assert R.text("4111 1111 1111 1111, 12 26") == "[card], 12 26"
    assert R.text("card 4111111111111111 exp 1226 cvv 123") == "card [card] exp 1226 cvv 123"


def test_ssn_ranges() -> None:
    assert ssn_ok("123456789") and ssn_ok("899450001")
    for bad in ("000456789", "666456789", "900456789", "123006789", "123450000"):
        assert not ssn_ok(bad), bad


@pytest.mark.parametrize(("said", "out"), [
    ("ssn 123-45-6789", "ssn [ssn]"), ("ssn 123 45 6789", "ssn [ssn]"),
    ("one two three four five six seven eight nine", "[ssn]"),
    ("one two three, four five, six seven eight nine", "[ssn]"),
    ("ssn 000-45-6789", "ssn 000-45-6789"), ("ssn 666-45-6789", "ssn 666-45-6789"),
    ("ssn 900-45-6789", "ssn 900-45-6789"), ("ssn 123-00-6789", "ssn 123-00-6789"),
    ("ssn 123-45-0000", "ssn 123-45-0000"),
    ("order 123456789", "order 123456789"),  # nine written digits in one number: not an SSN's shape
])
def test_ssn(said: str, out: str) -> None:
    assert R.text(said) == out


@pytest.mark.parametrize(("said", "out"), [
    ("mail jane.doe+x@mail.example.co.uk now", "mail [email] now"),
    ("JANE@EXAMPLE.COM", "[email]"),
    ("it is jane dot doe at example dot com", "it is [email]"),
    ("write to bob at acme dot io please", "write to [email] please"),
    ("meet me at noon", "meet me at noon"), ("me@localhost", "me@localhost"),
])
def test_email(said: str, out: str) -> None:
    assert R.text(said) == out


@pytest.mark.parametrize(("said", "out"), [
    ("call +44 20 7946 0958", "call [phone]"), ("call +14155550123", "call [phone]"),
    ("call (415) 555-0123 today", "call [phone] today"), ("415.555.0123", "[phone]"),
    ("1-415-555-0123", "[phone]"), ("my number is 020 7946 0958.", "my number is [phone]."),
    ("06 12 34 56 78", "[phone]"),
    ("plus one four one five five five five zero one two three", "[phone]"),
    ("four one five, five five five, oh one two three", "[phone]"),
    ("oh two oh, seven nine four six, oh nine five eight", "[phone]"),
    ("oh seven seven double oh, nine double oh one two three", "[phone]"),  # UK 07700 900123
    ("oh two oh seven nine four six oh nine five triple eight", "oh two oh seven nine four six oh nine five triple eight"),
    # not phone numbers: too short, a Unix time, a date, an area code starting with 1
    ("room 4155", "room 4155"), ("at 1764762727", "at 1764762727"), ("on 2026-12-03", "on 2026-12-03"),
    ("1155550123", "1155550123"), ("in 2024 and 2025", "in 2024 and 2025"), ("version 1.2.3", "version 1.2.3"),
    ("call call_4155550123ab ended", "call call_4155550123ab ended"),  # digits inside an id
    ("/api/v1/calls/call_4111111111111111/recording", "/api/v1/calls/call_4111111111111111/recording"),
])
def test_phone(said: str, out: str) -> None:
    assert R.text(said) == out


def test_detectors_can_be_chosen() -> None:
    only_cards = PiiRedactor(frozenset({"cards"}))
    said = "4111111111111111 jane@example.com 415-555-0123 123-45-6789"
    assert only_cards.text(said) == "[card] jane@example.com 415-555-0123 123-45-6789"
    assert R.text(said) == "[card] [email] [phone] [ssn]"


def test_values_keep_identifiers() -> None:
    v = {"call_id": "call_4111111111111111", "started_at": "1764762727", "text": "4111111111111111",
         "nested": [{"email": "a@b.com"}, 4111111111111111]}
    out = R.value(v, frozenset({"call_id", "started_at"}))
    assert out == {"call_id": "call_4111111111111111", "started_at": "1764762727", "text": "[card]",
                   "nested": [{"email": "[email]"}, 4111111111111111]}  # numbers are not text


def test_custom_patterns() -> None:
    acc = CustomPattern.compile("account", r"\bACC-\d{8}\b")
    mrn = CustomPattern.compile("mrn", r"MRN ?[0-9]{6,10}", r"<mrn \1>")  # a backslash is taken literally
    r = PiiRedactor(patterns=(acc, mrn))
    assert r.text("ACC-12345678 and MRN 1234567, card 4111111111111111") == "[account] and <mrn \\1>, card [card]"


@pytest.mark.parametrize("pattern", [
    r"(a+)+b", r"(\w+\s?)+$", r"(a|ab)*c", r"(x*)*y", r"(?:\d+-?)+x",  # nested / ambiguous repetition
    r"\d+\d+x", r"\w+@\w+\.com", r"\d+\d{1,32}x",  # stacked open-ended repetitions: bound them instead
    r"(a)\1", r"(?=a)b", r"(?<!a)b",  # back-references, look-arounds
    r"x*", "", "(", "a" * 300,  # matches nothing but the empty string, broken, too long
])
def test_unsafe_or_broken_patterns_are_refused(pattern: str) -> None:
    with pytest.raises(PatternError):
        CustomPattern.compile("p", pattern)


@pytest.mark.parametrize("pattern", [r"\w{1,16}@\w{1,16}\.\w{2,6}", r"\d+\d{1,4}x", r"(\d{3}-){2}\d{4}",
                                     r"(?:foo|bar)-\d{4}", r"[A-Z]{2}\d{6}"])
def test_safe_patterns_are_taken(pattern: str) -> None:
    CustomPattern.compile("p", pattern)


def test_an_allowed_pattern_on_hostile_input_stays_bounded() -> None:
    """The worst an accepted pattern meets: 16 KiB of what it almost matches. It sees slices
    of CUSTOM_SLICE characters, so the work grows with the length, not its square or worse
    (the per-test timeout would say if not)."""
    r = PiiRedactor(patterns=(CustomPattern.compile("p", r"\d+\d{1,4}x"),))
    hostile = "1" * (16 * CUSTOM_SLICE - 100)
    assert r.text(hostile + "x").endswith("[p]")


def test_policy_per_org() -> None:
    acc = CustomPattern.compile("account", r"ACC-\d{8}")
    policy = Redaction(OrgRedaction(), {"open": OrgRedaction(enabled=False),
                                        "bank": OrgRedaction(patterns=(acc,))})
    assert policy.for_org("open") is None
    default = policy.for_org("default")
    bank = policy.for_org("bank")
    assert default is not None and bank is not None
    assert default.text("ACC-12345678 4111111111111111") == "ACC-12345678 [card]"
    assert bank.text("ACC-12345678 4111111111111111") == "[account] [card]"
    assert policy.for_logs().text("ACC-12345678 4111111111111111") == "[account] [card]"
