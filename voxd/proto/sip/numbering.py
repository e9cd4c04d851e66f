"""Dialled numbers as a carrier wants them: E.164 (``+15551234567``), E.164 without the
plus, or as dialled; a national number gets the trunk's country code; a dial prefix goes
in front. Visual separators (spaces, dots, dashes, parentheses) are dropped."""

from __future__ import annotations

import re

from .errors import is_digits

_SEPARATORS = re.compile(r"[\s.\-()/]")
_DIALLED = re.compile(r"\+?[0-9]{1,20}|[0-9*#]{1,32}")


class NumberError(ValueError):
    pass


def normalise(number: str) -> str:
    """``+1 (555) 123-4567`` -> ``+15551234567``; NumberError for anything else."""
    text = _SEPARATORS.sub("", number.strip())
    if text.startswith("00") and is_digits(text[2:]):
        text = "+" + text[2:]  # international prefix written as 00
    if not _DIALLED.fullmatch(text):
        raise NumberError(f"{number!r} is not a phone number (digits, an optional leading +)")
    return text


def format_number(number: str, *, style: str = "e164", country_code: str | None = None,
                  dial_prefix: str = "") -> str:
    """The user part of the Request-URI for ``number`` on a trunk."""
    text = normalise(number)
    if style != "as_dialled" and is_digits(text):
        if country_code is None:
            if style != "e164_no_plus" or len(text) < 8:
                raise NumberError(f"{number!r} has no country code and the trunk sets no country_code")
        else:
            text = "+" + country_code + text.lstrip("0")
    if style == "e164" and is_digits(text):
        text = "+" + text
    elif style == "e164_no_plus":
        text = text.lstrip("+")
    if style != "as_dialled" and not re.fullmatch(r"\+?[1-9][0-9]{6,14}", text):
        raise NumberError(f"{number!r} is not a valid E.164 number")
    return dial_prefix + text


def is_number(text: str) -> bool:
    try:
        normalise(text)
    except NumberError:
        return False
    return True
