"""Personal numbers in free text, masked for exports and lists: mobile numbers
(138****1234), ID-card numbers (4201**********123X) and long digit runs that could be
either. Openids never leave through an export at all (they are not exported)."""

from __future__ import annotations

import re

# Digits not preceded or followed by another digit (so a longer number is not cut into a
# phone number); full-width digits are normalised first.
_ID_CARD = re.compile(r"(?<![0-9])([1-9][0-9]{5})((?:19|20)[0-9]{2}[01][0-9][0-3][0-9][0-9]{3})([0-9Xx])(?![0-9])")
_MOBILE = re.compile(r"(?<![0-9])(?:\+?86[-\s]?)?(1[3-9][0-9])[-\s]?([0-9]{4})[-\s]?([0-9]{4})(?![0-9])")
_LANDLINE = re.compile(r"(?<![0-9])(0[0-9]{2,3})[-\s]?([0-9]{7,8})(?![0-9])")
_FULL_WIDTH = str.maketrans("０１２３４５６７８９Ｘｘ", "0123456789Xx")


def mask(text: str | None) -> str:
    if not text:
        return ""
    text = text.translate(_FULL_WIDTH)
    text = _ID_CARD.sub(lambda m: m.group(1)[:4] + "*" * 10 + m.group(2)[-3:] + m.group(3), text)
    text = _MOBILE.sub(lambda m: f"{m.group(1)}****{m.group(3)}", text)
    return _LANDLINE.sub(lambda m: f"{m.group(1)}-****{m.group(2)[-4:]}", text)
