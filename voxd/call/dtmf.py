"""Keypad handling as a sans-IO state machine: menus, digit collection, free digits.

Fed digits and clock ticks (media-time seconds), it returns actions for the
session to carry out. Any digit source (RFC 4733, SIP INFO, in-band tones,
websocket, browser keypad) ends up here the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from voxd.agents.schema import Collect, DtmfConfig, Menu
from voxd.core.placeholders import fill

FREE_DIGIT_TIMEOUT_S = 2.0
MASK = "***"  # what a secure collection's digits become everywhere but the tool they are for


@dataclass(frozen=True)
class Say:
    text: str


@dataclass(frozen=True)
class ToConversation:
    """Hand text to the LLM as the caller's input."""

    text: str


@dataclass(frozen=True)
class Hangup:
    pass


@dataclass(frozen=True)
class Transfer:
    target: str
    attended: bool = False
    summary: str = ""


@dataclass(frozen=True)
class CallTool:
    name: str
    arguments: dict[str, Any]
    masked: tuple[str, ...] = ()  # argument names recorded as MASK (a secure collection's digits)


DtmfAction = Say | ToConversation | Hangup | Transfer | CallTool


class KeypadMachine:
    def __init__(self, cfg: DtmfConfig) -> None:
        self.cfg = cfg
        self.menu: str | None = None
        self.collecting: str | None = None
        self._digits = ""
        self._last_at = 0.0
        self._menu_since = 0.0
        self._retries = 0

    @property
    def active(self) -> bool:
        return self.menu is not None or self.collecting is not None

    @property
    def secure(self) -> bool:
        """A `secure: true` collection is running: its digits must not be kept."""
        return self.collecting is not None and self.cfg.collect[self.collecting].secure

    # -- entry points
    def open_menu(self, name: str, now: float) -> list[DtmfAction]:
        menu = self.cfg.menus[name]
        self.menu, self.collecting = name, None
        self._menu_since = now
        self._retries = 0
        return [Say(menu.prompt)]

    def start_collect(self, name: str, now: float) -> list[DtmfAction]:
        c = self.cfg.collect[name]
        self.menu, self.collecting = None, name
        self._digits = ""
        self._last_at = now
        return [Say(c.prompt)]

    def digit(self, d: str, now: float) -> list[DtmfAction]:
        if self.collecting is not None:
            return self._collect_digit(self.cfg.collect[self.collecting], d, now)
        if self.menu is None and self.cfg.main_menu:
            self.menu = self.cfg.main_menu
        if self.menu is not None:
            return self._menu_digit(self.cfg.menus[self.menu], d, now)
        # free digits: gathered, then given to the conversation
        if d == "#" and self._digits:
            return self._flush_free()
        self._digits += d
        self._last_at = now
        return []

    def tick(self, now: float) -> list[DtmfAction]:
        if self.collecting is not None:
            c = self.cfg.collect[self.collecting]
            if self._digits and now - self._last_at >= c.inter_digit_timeout_ms / 1000:
                return self._finish_collect(c)
            return []
        if self.menu is not None:
            menu = self.cfg.menus[self.menu]
            if now - self._menu_since >= menu.timeout_ms / 1000:
                if self._retries >= menu.max_retries:
                    self.menu = None
                    return []
                self._retries += 1
                self._menu_since = now
                return [Say(menu.prompt)]
            return []
        if self._digits and now - self._last_at >= FREE_DIGIT_TIMEOUT_S:
            return self._flush_free()
        return []

    def note_activity(self, now: float) -> None:
        """The bot spoke or the caller talked: restart the menu's no-input timer."""
        self._menu_since = now

    # -- internals
    def _flush_free(self) -> list[DtmfAction]:
        digits, self._digits = self._digits, ""
        return [ToConversation(f"(The caller pressed the keys {digits} on the keypad.)")]

    def _menu_digit(self, menu: Menu, d: str, now: float) -> list[DtmfAction]:
        opt = menu.options.get(d)
        if opt is None:
            self._menu_since = now
            return [Say(f"{menu.invalid} {menu.prompt}")]
        out: list[DtmfAction] = [Say(opt.say)] if opt.say else []
        self.menu = None
        if opt.then == "hangup":
            out.append(Hangup())
        elif opt.then == "transfer" and opt.target:
            out.append(Transfer(opt.target, opt.mode == "attended", opt.summary or ""))
        elif opt.then == "goto" and opt.target:
            out += self.open_menu(opt.target, now)
        elif opt.then == "collect" and opt.target:
            out += self.start_collect(opt.target, now)
        elif opt.then == "repeat":
            name = next(k for k, v in self.cfg.menus.items() if v is menu)
            out += self.open_menu(name, now)
        return out

    def _collect_digit(self, c: Collect, d: str, now: float) -> list[DtmfAction]:
        if c.finish_on and d == c.finish_on:
            return self._finish_collect(c)
        self._digits += d
        self._last_at = now
        if len(self._digits) >= c.max_digits:
            return self._finish_collect(c)
        return []

    def _finish_collect(self, c: Collect) -> list[DtmfAction]:
        name = self.collecting or ""
        digits, self._digits = self._digits, ""
        if len(digits) < c.min_digits:
            self._last_at = self._last_at  # keep collecting; re-prompt
            return [Say(c.prompt)]
        self.collecting = None
        out: list[DtmfAction] = []
        shown = MASK if c.secure else digits
        if c.confirm:
            out.append(Say(fill(c.confirm, {"digits": shown if c.secure else " ".join(digits)})))
        if c.then == "tool" and c.tool:
            out.append(CallTool(c.tool, {c.argument: digits}, (c.argument,) if c.secure else ()))
        else:
            out.append(ToConversation(f"(The caller entered {name}: {shown})"))
        return out
