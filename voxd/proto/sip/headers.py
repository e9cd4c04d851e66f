"""An ordered, case-insensitive SIP header list with compact-form expansion."""

from __future__ import annotations

from collections.abc import Iterable, Iterator

COMPACT_FORMS: dict[str, str] = {
    "a": "Accept-Contact",
    "b": "Referred-By",
    "c": "Content-Type",
    "d": "Request-Disposition",
    "e": "Content-Encoding",
    "f": "From",
    "i": "Call-ID",
    "j": "Reject-Contact",
    "k": "Supported",
    "l": "Content-Length",
    "m": "Contact",
    "n": "Identity-Info",
    "o": "Event",
    "r": "Refer-To",
    "s": "Subject",
    "t": "To",
    "u": "Allow-Events",
    "v": "Via",
    "x": "Session-Expires",
    "y": "Identity",
}

_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        *COMPACT_FORMS.values(),
        "Accept",
        "Allow",
        "Authorization",
        "CSeq",
        "Contact",
        "Date",
        "Expires",
        "Max-Forwards",
        "Min-SE",
        "P-Asserted-Identity",
        "Proxy-Authenticate",
        "Proxy-Authorization",
        "RAck",
        "Reason",
        "Record-Route",
        "Require",
        "Retry-After",
        "Route",
        "RSeq",
        "Server",
        "Subscription-State",
        "Timestamp",
        "Unsupported",
        "User-Agent",
        "WWW-Authenticate",
        "Warning",
    )
}

# Headers whose value is a comma-separated list (RFC 3261 §7.3.1). Headers such
# as WWW-Authenticate or Date contain commas but are not lists.
LIST_HEADERS = frozenset(
    {"via", "route", "record-route", "contact", "allow", "supported", "require",
     "accept", "unsupported", "proxy-require", "allow-events"}
)


def canonical_name(name: str) -> str:
    """Expand compact forms and normalise the case of well-known header names."""
    lower = name.lower()
    if len(lower) == 1 and lower in COMPACT_FORMS:
        return COMPACT_FORMS[lower]
    known = _CANONICAL.get(lower)
    if known is not None:
        return known
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def split_list(value: str) -> list[str]:
    """Split a comma-joined header value, ignoring commas in quotes or <...>."""
    if '"' not in value and "<" not in value:
        return [p for p in (part.strip() for part in value.split(",")) if p]
    parts: list[str] = []
    start = 0
    quoted = False
    angle = False
    escaped = False
    for i, ch in enumerate(value):
        if escaped:
            escaped = False
        elif quoted and ch == "\\":
            escaped = True
        elif ch == '"':
            quoted = not quoted
        elif not quoted and ch == "<":
            angle = True
        elif not quoted and ch == ">":
            angle = False
        elif ch == "," and not quoted and not angle:
            parts.append(value[start:i].strip())
            start = i + 1
    parts.append(value[start:].strip())
    return [p for p in parts if p]


class Headers:
    """Ordered header fields; lookups are case-insensitive, names canonical."""

    __slots__ = ("_items",)

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(canonical_name(k), v) for k, v in items]

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self.get(name) is not None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Headers) and self._items == other._items

    def __repr__(self) -> str:
        names = ", ".join(k for k, _ in self._items)
        return f"Headers([{names}])"

    def copy(self) -> Headers:
        return Headers(self._items)

    def get(self, name: str, default: str | None = None) -> str | None:
        key = canonical_name(name).lower()
        for k, v in self._items:
            if k.lower() == key:
                return v
        return default

    def get_all(self, name: str) -> list[str]:
        """All values of ``name``; list headers are also split at commas."""
        key = canonical_name(name).lower()
        values: list[str] = []
        for k, v in self._items:
            if k.lower() == key:
                if key in LIST_HEADERS:
                    values.extend(split_list(v))
                else:
                    values.append(v)
        return values

    def add(self, name: str, value: str) -> None:
        self._items.append((canonical_name(name), value))

    def prepend(self, name: str, value: str) -> None:
        self._items.insert(0, (canonical_name(name), value))

    def remove(self, name: str) -> None:
        key = canonical_name(name).lower()
        self._items = [(k, v) for k, v in self._items if k.lower() != key]

    def set(self, name: str, value: str) -> None:
        """Replace every ``name`` field by one, keeping the first one's position."""
        key = canonical_name(name).lower()
        for i, (k, _) in enumerate(self._items):
            if k.lower() == key:
                self._items[i] = (canonical_name(name), value)
                self._items[i + 1 :] = [
                    (k2, v2) for k2, v2 in self._items[i + 1 :] if k2.lower() != key
                ]
                return
        self.add(name, value)
