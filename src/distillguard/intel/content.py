"""Content signatures: a keyed SimHash of a prompt's template frame or of a system prompt.

The frame is what the `template` signal fingerprints (numbers, quoted spans, code, names and the
content under slot headers removed), so fillings do not change it; SimHash makes near-identical
frames (one word edited, a header renamed) land within a few bits, where a cryptographic hash
would not match at all. Shingles are hashed with a key derived from the community key, so a
signature cannot be tested against a guessed text by anyone outside the community, and no text
leaves: 64 bits per frame.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from functools import lru_cache

import numpy as np

from distillguard.signals.template import skeleton

MIN_TOKENS = 6  # a frame shorter than this ("translate this:") is shared by strangers: no signature
_TOKEN = re.compile(r"\w+|\x01")


def template_frame(prompt: str) -> str | None:
    """The fixed frame of a prompt, or None when nothing fixed is left (a bare question is its
    own 'template' and is never signed: that would be the user's question)."""
    frame, _ = skeleton(prompt)
    return frame if frame.replace("\x01", "").strip() else None


def system_frame(system_prompt: str) -> str | None:
    if not system_prompt.strip():
        return None
    frame, _ = skeleton(system_prompt)
    return frame if frame.replace("\x01", "").strip() else None


@lru_cache(maxsize=8192)
def simhash64(text: str, key: bytes) -> int | None:
    """A 64-bit SimHash over word 3-shingles, each hashed with keyed BLAKE2b; None when the text
    has fewer than MIN_TOKENS tokens.

    >>> key = b"k" * 32
    >>> a = simhash64("Rank the two answers below. Answer A: \\x01 Answer B: \\x01 Which is better?", key)
    >>> b = simhash64("Rank the two answers below. Answer A: \\x01 Answer B: \\x01 Which one is better?", key)
    >>> hamming(a, b) <= 12 < hamming(a, simhash64("Write a haiku about the sea and the moon tonight", key))
    True
    """
    tokens = _TOKEN.findall(text.lower())
    if len(tokens) < MIN_TOKENS:
        return None
    shingles = Counter(" ".join(tokens[i : i + 3]) for i in range(len(tokens) - 2))
    hashes = np.array(
        [
            int.from_bytes(hashlib.blake2b(s.encode(), digest_size=8, key=key).digest(), "big")
            for s in shingles
        ],
        dtype=np.uint64,
    )
    weights = np.fromiter(shingles.values(), dtype=np.int64, count=len(shingles))
    bits = np.unpackbits(hashes.byteswap().view(np.uint8).reshape(-1, 8), axis=1, bitorder="big")
    votes = (bits.astype(np.int64) * 2 - 1).T @ weights
    out = 0
    for bit in votes > 0:
        out = (out << 1) | int(bit)
    return out


def hamming(a: int | None, b: int | None) -> int:
    if a is None or b is None:
        return 64
    return (a ^ b).bit_count()


def signature_hex(value: int) -> str:
    return f"{value:016x}"
