"""Numbered choices: the resident replies with the number of a listed option."""

from __future__ import annotations

# ASCII and full-width digits only: str.isdigit() also accepts '²', '⑤', '٣' …, which
# int() refuses or reads as something the resident did not mean.
_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
_ASCII_DIGITS = frozenset("0123456789")
MAX_DIGITS = 4  # no list is that long; a 5,000-digit reply is not a choice


def parse_choice(text: str, count: int) -> int | None:
    """The option number (1 … count) the reply names, or None if it names none.

    Surrounding spaces (also the ideographic space) and a trailing full stop are allowed;
    anything else — other digit characters, signs, words, a number out of range — is None.
    """
    candidate = text.strip().rstrip("。.").strip().translate(_DIGITS)
    if not candidate or len(candidate) > MAX_DIGITS or not _ASCII_DIGITS.issuperset(candidate):
        return None
    number = int(candidate)
    return number if 1 <= number <= count else None
