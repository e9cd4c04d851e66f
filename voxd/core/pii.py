"""Personal data out of what voxd writes: card numbers, US SSNs, emails, phone numbers
and an organisation's own patterns, replaced by ``[card]``, ``[ssn]``, ``[email]``,
``[phone]`` (or the pattern's replacement). Pure: no I/O, no clock.

Digits are found as *runs*: written groups (``4111 1111-1111``) and spoken digit words
(``four one one one``, ``oh``/``zero`` for 0), joined by spaces, dashes, dots, commas,
slashes or brackets. Each run is cut into groups (a written number, or a stretch of
single digits and digit words) and the leftmost, longest stretch of whole groups that
is a card (13-19 digits passing the Luhn check), an SSN (AAA-GG-SSSS, or nine single
digits, outside the never-issued ranges) or a phone number (``+`` / ``plus`` and 8-15
digits, a North American 10 or 1+10 digit number, a national number starting with 0)
is replaced. A digit string that is none of these (an order number, a random 16 digits
failing Luhn) stays.

Custom patterns come from administrators, so they are checked when loaded: at most
:data:`MAX_PATTERN_LEN` characters, no back-references or look-arounds, and no
repetition nested inside another unbounded repetition (``(a+)+``, ``(\\w|\\d)*``), the
shapes that make Python's backtracking engine take exponential time; and they only ever
see text in slices of at most :data:`CUSTOM_SLICE` characters.
"""

from __future__ import annotations

import re
import re._constants as sre_c  # the parse tree is how a pattern's shape is checked
import re._parser as sre_parse
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

CARD, SSN, EMAIL, PHONE = "[card]", "[ssn]", "[email]", "[phone]"
BUILTIN = ("cards", "ssn", "emails", "phones")
MAX_PATTERN_LEN = 256
MAX_PATTERNS = 32
CUSTOM_SLICE = 1024  # custom patterns see text in slices this long at most
# the product of the repetitions' ranges (an unbounded one counts as CUSTOM_SLICE): what one
# match attempt may backtrack through at worst
MAX_BACKTRACK = 4 * CUSTOM_SLICE

_WORDS = {"zero": "0", "oh": "0", "one": "1", "two": "2", "three": "3", "four": "4",
          "five": "5", "six": "6", "seven": "7", "eight": "8", "nine": "9"}
# a number standing alone (not inside an id such as call_4155550123ab) or a digit word
_DIGIT_WORD = r"(?:zero|oh|one|two|three|four|five|six|seven|eight|nine)"
# "double oh seven", "triple five" as people read numbers out
_TOKEN = re.compile(r"(?<!\w)\d+(?!\w)|\b(?:(double|triple)[ \t]+)?(" + _DIGIT_WORD + r"|\d(?!\w))\b", re.IGNORECASE)
# what may stand between two digit tokens of one run
_GAP = re.compile(r"[ \t]{0,3}[-.,/()]?[ \t]{0,3}")
_PLUS = re.compile(r"(?:\+|\bplus[ \t]+)[ \t]*$", re.IGNORECASE)

_EMAIL = re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}\b")
_TLDS = r"(?:com|org|net|edu|gov|io|co|uk|us|de|fr|es|it|nl|ca|au|info|biz|me|app|dev)"
# as speech-to-text writes an address read out: "jane dot doe at example dot com"
_SPOKEN_EMAIL = re.compile(
    r"\b[A-Za-z0-9_+-]{1,64}(?:[ \t]+dot[ \t]+[A-Za-z0-9_+-]{1,64}){0,4}[ \t]+at[ \t]+[A-Za-z0-9-]{1,63}"
    r"(?:[ \t]+dot[ \t]+[A-Za-z0-9-]{1,63}){0,3}[ \t]+dot[ \t]+" + _TLDS + r"\b", re.IGNORECASE)


class PatternError(ValueError):
    """A custom pattern refused at load: too long, unsafe or not a regular expression."""


@dataclass(frozen=True)
class CustomPattern:
    name: str
    regex: re.Pattern[str]
    replacement: str

    @classmethod
    def compile(cls, name: str, pattern: str, replacement: str | None = None) -> CustomPattern:
        check_pattern(pattern)
        try:
            compiled = re.compile(pattern)
        except re.error as e:
            raise PatternError(f"pattern {name!r}: not a regular expression: {e}") from None
        if compiled.search(""):
            raise PatternError(f"pattern {name!r} matches the empty string")
        return cls(name, compiled, replacement if replacement is not None else f"[{name}]")


def check_pattern(pattern: str) -> None:
    """Raise :class:`PatternError` unless ``pattern`` is short and cannot backtrack badly."""
    if not pattern or len(pattern) > MAX_PATTERN_LEN:
        raise PatternError(f"a pattern is 1-{MAX_PATTERN_LEN} characters")
    try:
        tree = sre_parse.parse(pattern)
    except re.error as e:
        raise PatternError(f"not a regular expression: {e}") from None
    _check_tree(list(tree), inside_repeat=False)
    cost = _cost(list(tree))
    if cost > MAX_BACKTRACK:
        raise PatternError(f"too many open-ended repetitions (worst case {cost} steps a position, at most "
                           f"{MAX_BACKTRACK}); bound them, e.g. \\w{{1,64}} instead of \\w+")


_REPEATS = (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT, sre_c.POSSESSIVE_REPEAT)
_REFUSED = {sre_c.GROUPREF: "back-references", sre_c.GROUPREF_EXISTS: "conditional groups",
            sre_c.ASSERT: "look-aheads/behinds", sre_c.ASSERT_NOT: "look-aheads/behinds"}


def _check_tree(items: list[tuple[Any, Any]], inside_repeat: bool) -> None:
    for op, arg in items:
        if op in _REFUSED:
            raise PatternError(f"{_REFUSED[op]} are not allowed in a redaction pattern")
        if op in _REPEATS:
            low, high, sub = arg
            if inside_repeat and low != high:
                raise PatternError("nested repetition (like (a+)+) can take exponential time; not allowed")
            _check_tree(list(sub), inside_repeat or high > 1)
        elif op == sre_c.SUBPATTERN:
            _check_tree(list(arg[-1]), inside_repeat)
        elif op == sre_c.BRANCH:
            if inside_repeat:
                raise PatternError("alternation inside a repetition (like (a|ab)*) can take exponential time; "
                                   "use a character class")
            for alt in arg[1]:
                _check_tree(list(alt), inside_repeat)


def _cost(items: list[tuple[Any, Any]]) -> int:
    total = 1
    for op, arg in items:
        if op in _REPEATS:
            low, high, sub = arg
            span = CUSTOM_SLICE if high == sre_c.MAXREPEAT else min(high - low + 1, CUSTOM_SLICE)
            total *= span * _cost(list(sub))
        elif op == sre_c.SUBPATTERN:
            total *= _cost(list(arg[-1]))
        elif op == sre_c.BRANCH:
            total *= sum(_cost(list(alt)) for alt in arg[1])
    return total


# ---------------------------------------------------------------------- digit runs
@dataclass
class _Group:
    start: int
    end: int
    digits: str
    singles: bool  # a stretch of single digits / digit words, not one written number


def luhn_ok(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


def ssn_ok(digits: str) -> bool:
    area, group, serial = digits[:3], digits[3:5], digits[5:]
    return area not in ("000", "666") and area[0] != "9" and group != "00" and serial != "0000"


def _runs(text: str) -> list[list[_Group]]:
    """Digit tokens of ``text`` gathered into runs of groups."""
    runs: list[list[_Group]] = []
    run: list[_Group] = []
    last_end = -1
    for m in _TOKEN.finditer(text):
        if m.group(2) is None:
            digits = m.group()
        else:
            word = m.group(2)
            d = word if word.isdigit() else _WORDS[word.lower()]
            digits = d * {None: 1, "double": 2, "triple": 3}[m.group(1) and m.group(1).lower()]
        single = len(digits) == 1 or m.group(1) is not None
        joined = run and _GAP.fullmatch(text, last_end, m.start()) is not None
        if not joined and run:
            runs.append(run)
            run = []
        if run and single and run[-1].singles:
            g = run[-1]
            g.end, g.digits = m.end(), g.digits + digits
        else:
            run.append(_Group(m.start(), m.end(), digits, single))
        last_end = m.end()
    if run:
        runs.append(run)
    return runs


def _classify(groups: list[_Group], plus: bool, kinds: frozenset[str]) -> str | None:
    digits = "".join(g.digits for g in groups)
    n = len(digits)
    if "cards" in kinds and 13 <= n <= 19 and luhn_ok(digits) and digits[0] != "0":
        return CARD
    if "ssn" in kinds and n == 9 and ssn_ok(digits):
        sizes = [len(g.digits) for g in groups]
        if sizes == [3, 2, 4] or (len(groups) == 1 and groups[0].singles):
            return SSN
    if "phones" in kinds:
        if plus and 8 <= n <= 15 and digits[0] != "0":
            return PHONE
        if n == 10 and digits[0] in "23456789" and digits[3] in "23456789":
            return PHONE  # North American: NPA-NXX-XXXX
        if n == 11 and digits[0] == "1" and digits[1] in "23456789" and digits[4] in "23456789":
            return PHONE
        if n in (10, 11) and digits[0] == "0" and digits[1] != "0":
            return PHONE  # a national number with its trunk prefix (UK 020 7946 0958, FR 06 12 34 56 78)
    return None


def _digit_spans(text: str, kinds: frozenset[str]) -> list[tuple[int, int, str]]:
    spans: list[tuple[int, int, str]] = []
    for run in _runs(text):
        i = 0
        while i < len(run):
            plus_m = _PLUS.search(text, max(0, run[i].start - 8), run[i].start) if i == 0 else None
            for j in range(len(run), i, -1):
                kind = _classify(run[i:j], plus_m is not None, kinds)
                if kind is None and plus_m is not None:
                    kind = _classify(run[i:j], False, kinds)
                if kind is not None:
                    start = run[i].start
                    if plus_m is not None and kind == PHONE:
                        start = plus_m.start()
                    elif start > 0 and text[start - 1] == "(":
                        start -= 1
                    spans.append((start, run[j - 1].end, kind))
                    i = j
                    break
            else:
                i += 1
    return spans


def _sub_spans(text: str, spans: Iterable[tuple[int, int, str]]) -> str:
    out, pos = [], 0
    for start, end, repl in sorted(spans):
        if start < pos:
            continue
        out.append(text[pos:start])
        out.append(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out)


# Keys whose strings are identifiers, times or routing, never scanned: a call id or a Unix
# time is not a phone number. ``variables`` (set by whoever placed the call) and the SIP
# ``from_uri``/``to_uri`` are routing data, not what was said.
KEEP = frozenset({
    "id", "call_id", "conversation_id", "message_id", "delivery_id", "endpoint_id", "type", "event", "agent",
    "agent_version", "transport", "channel", "direction", "status", "from_uri", "to_uri",
    "started_at", "answered_at", "ended_at", "end_reason", "ended_by", "created_at", "updated_at", "at",
    "timestamp", "sha256", "file", "format", "content_type", "channels", "expires_at", "finished_at", "org",
    "speaker", "source", "index", "idx", "variables", "latency", "model", "engine", "language", "url",
})


# ---------------------------------------------------------------------- the redactor
@dataclass(frozen=True)
class PiiRedactor:
    """One organisation's detectors. ``text`` redacts a string; ``value`` a JSON-like value,
    leaving the strings under ``keep`` keys (identifiers, timestamps) as they are."""

    kinds: frozenset[str] = frozenset(BUILTIN)
    patterns: tuple[CustomPattern, ...] = ()

    def text(self, s: str) -> str:
        if not s:
            return s
        if self.patterns:
            s = "".join(self._custom(piece) for piece in _slices(s))
        if "emails" in self.kinds and ("@" in s or " at " in s.lower()):
            s = _EMAIL.sub(EMAIL, s)
            s = _SPOKEN_EMAIL.sub(EMAIL, s)
        spans = _digit_spans(s, self.kinds)
        return _sub_spans(s, [(a, b, k) for a, b, k in spans]) if spans else s

    def _custom(self, piece: str) -> str:
        for p in self.patterns:
            piece = p.regex.sub(p.replacement.replace("\\", "\\\\"), piece)
        return piece

    def value(self, v: Any, keep: frozenset[str] = frozenset()) -> Any:
        if isinstance(v, str):
            return self.text(v)
        if isinstance(v, dict):
            return {k: (x if k in keep else self.value(x, keep)) for k, x in v.items()}
        if isinstance(v, list | tuple):
            return [self.value(x, keep) for x in v]
        return v


def _slices(s: str) -> Iterable[str]:
    """``s`` in pieces of at most :data:`CUSTOM_SLICE` characters, cut at a line break or
    a space where there is one (so a match is rarely split)."""
    while len(s) > CUSTOM_SLICE:
        cut = max(s.rfind("\n", 0, CUSTOM_SLICE), s.rfind(" ", 0, CUSTOM_SLICE))
        cut = cut + 1 if cut > 0 else CUSTOM_SLICE
        yield s[:cut]
        s = s[cut:]
    yield s


@dataclass(frozen=True)
class OrgRedaction:
    enabled: bool = True
    detectors: frozenset[str] = frozenset(BUILTIN)
    patterns: tuple[CustomPattern, ...] = ()


@dataclass(frozen=True)
class Redaction:
    """The daemon's policy: a default and per-organisation overrides. ``for_org`` is None
    where redaction is off."""

    default: OrgRedaction = field(default_factory=OrgRedaction)
    orgs: Mapping[str, OrgRedaction] = field(default_factory=dict)

    def for_org(self, org: str) -> PiiRedactor | None:
        rule = self.orgs.get(org, self.default)
        if not rule.enabled:
            return None
        return PiiRedactor(rule.detectors, rule.patterns)

    def for_logs(self) -> PiiRedactor:
        """Log lines are the operator's, written for every organisation at once: the built-in
        detectors and every organisation's patterns, whatever one organisation turned off."""
        patterns = tuple(p for rule in (self.default, *self.orgs.values()) for p in rule.patterns)
        return PiiRedactor(frozenset(BUILTIN), patterns)


OFF = Redaction(OrgRedaction(enabled=False))
