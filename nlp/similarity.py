"""Near-duplicate reports: MinHash signatures over character shingles.

Two residents rarely describe one broken elevator in the same words, so the
comparison is on characters after normalising (NFKC: full-width → half-width,
lower case, punctuation and spaces dropped, filler characters such as 的/了/啦/快
dropped). Shingles are single characters (n = 1): on realistic same-grid pairs
character 3-grams gave paraphrases a Jaccard of 0.06–0.30 and unrelated reports
0.03–0.21 (no threshold separates them), bigrams 0.28–0.52 vs up to 0.39, while
characters gave 0.62–0.83 for paraphrases and at most 0.46 for different problems
of the same grid (the pairs are in tests/test_duplicates.py). Word order is lost, which is why
callers also require the same grid, a time window and, for other residents, the
same category.

A signature is NUM_HASHES minimum values of independent 32-bit hash functions,
taken from SHAKE-128 with a fixed seed, so it is the same in every process and on
every machine (Python's hash() is salted per process). Each character's hash
vector is cached, so a signature costs about one min() per function. It is stored
as a compact base64 string (684 characters) in the ticket row.
"""

from __future__ import annotations

import binascii
import functools
import hashlib
import re
import sys
import unicodedata
from array import array

import numpy

NUM_HASHES = 128
SHINGLE = 1  # characters per shingle; see the module docstring
SEED = b"minyi-minhash-v1:"
# Estimated Jaccard at or above this counts as the same problem. On the pairs in
# tests/test_duplicates.py paraphrases measure 0.62–0.83 exact (0.59–0.80 estimated),
# different problems of the same grid at most 0.46 (0.45): the threshold sits between,
# a little towards recall, since a linked report is still recorded and other residents'
# reports must also share the category. The estimate's standard error with 128
# functions is about 0.045 near the threshold.
THRESHOLD = 0.52
MIN_SHINGLES = 4  # shorter texts (「1」, 「好的」) carry no signature

# Filler that residents add or drop freely when restating a problem.
_FILLER = frozenset("的了啦又呀吧呢吗啊哦哈呐么嘛很都也就还是在有和与及被把给让请快来去一个这那些我们你他她它您")
_BYTES = NUM_HASHES * 4
_LANE_LOW_BITS = int.from_bytes(b"\x01\x00\x00\x00" * NUM_HASHES, "little")


# What normalise() drops: anything not alphanumeric (\W, and the underscore \w allows) and
# the filler characters. One regex pass instead of a Python test a character.
_DROPPED = re.compile("[\\W_" + re.escape("".join(sorted(_FILLER))) + "]+")


def normalise(text: str) -> str:
    return _DROPPED.sub("", unicodedata.normalize("NFKC", text).lower())


def shingles(text: str) -> set[str]:
    text = normalise(text)
    if len(text) <= SHINGLE:
        return {text} if text else set()
    return {text[i:i + SHINGLE] for i in range(len(text) - SHINGLE + 1)}


@functools.lru_cache(maxsize=65536)
def _hashes(shingle: str) -> bytes:
    """The shingle's value under each of the NUM_HASHES functions, as little-endian
    32-bit words."""
    return hashlib.shake_128(SEED + shingle.encode()).digest(_BYTES)


def minhash(text: str) -> array | None:
    """The NUM_HASHES minima for `text`, or None when it is too short to compare.
    One numpy minimum over the shingles' cached hash rows (≈ 15× faster than a
    Python min() per function)."""
    items = shingles(text)
    if len(items) < MIN_SHINGLES:
        return None
    rows = numpy.frombuffer(b"".join(map(_hashes, items)), dtype="<u4").reshape(len(items), NUM_HASHES)
    return array("I", rows.min(axis=0).astype(numpy.uint32).tobytes())


def pack(values: array) -> bytes:
    """The minima as NUM_HASHES little-endian 32-bit words (the same on every machine)."""
    values = array("I", values)
    if sys.byteorder == "big":
        values.byteswap()
    return values.tobytes()


def encode(values: array) -> str:
    return binascii.b2a_base64(pack(values), newline=False).decode("ascii")


def decode(encoded: object) -> bytes | None:
    """The packed signature from its stored form; None for anything else."""
    if not isinstance(encoded, str):
        return None
    try:
        raw = binascii.a2b_base64(encoded, strict_mode=True)
    except (binascii.Error, ValueError):
        return None
    return raw if len(raw) == _BYTES else None


def signature(text: str) -> str | None:
    """What goes in ticket.signature: encode(minhash(text)), or None."""
    values = minhash(text)
    return encode(values) if values is not None else None


def estimate(a: bytes | str | None, b: bytes | str | None) -> float:
    """Estimated Jaccard similarity: the share of hash functions whose minima agree.
    Signatures are packed (bytes) or encoded (str); 0.0 if either is missing."""
    if not isinstance(a, bytes):
        a = decode(a)
    if not isinstance(b, bytes):
        b = decode(b)
    if a is None or b is None or len(a) != len(b):
        return 0.0
    return _agreement(int.from_bytes(a, "little") ^ int.from_bytes(b, "little"))


def _agreement(xor: int) -> float:
    """Share of zero 32-bit words in `xor` (the two signatures XORed as one big int):
    OR-fold each word onto its lowest bit, then count the words that are not zero. A few
    big-int operations instead of a Python loop over NUM_HASHES pairs."""
    xor |= xor >> 16
    xor |= xor >> 8
    xor |= xor >> 4
    xor |= xor >> 2
    xor |= xor >> 1
    return 1.0 - (xor & _LANE_LOW_BITS).bit_count() / NUM_HASHES


class Matcher:
    """One signature compared with many stored ones (the new report against its
    candidates): the new one is converted once."""

    __slots__ = ("_value",)

    def __init__(self, packed: bytes) -> None:
        self._value = int.from_bytes(packed, "little")

    def score(self, encoded: object) -> float:
        if not isinstance(encoded, str):
            return 0.0
        try:
            raw = binascii.a2b_base64(encoded)
        except (binascii.Error, ValueError):
            return 0.0
        if len(raw) != _BYTES:
            return 0.0
        return _agreement(int.from_bytes(raw, "little") ^ self._value)


def similarity(text_a: str, text_b: str) -> float:
    return estimate(_packed(text_a), _packed(text_b))


def _packed(text: str) -> bytes | None:
    values = minhash(text)
    return pack(values) if values is not None else None


def jaccard(text_a: str, text_b: str) -> float:
    """The exact Jaccard similarity of the shingle sets (what `similarity` estimates)."""
    a, b = shingles(text_a), shingles(text_b)
    return len(a & b) / len(a | b) if a or b else 0.0
