"""Exact and near-duplicate detection for text examples, without comparing every pair.

    index = NearDuplicateIndex(threshold=0.9)
    if index.find(text) is None: index.add(text, key)

Near-duplicates are pairs whose word 3-shingle sets have Jaccard similarity >= threshold. Candidates come
from MinHash locality-sensitive hashing (32 hash functions in 8 bands of 4): texts only get compared when
they share a band, so the cost stays about linear in the number of texts. For a pair at Jaccard 0.9 the
chance of never sharing a band is (1 - 0.9**4)**8 < 0.02%; every candidate is then checked exactly.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import defaultdict

import numpy as np

SHINGLE_WORDS = 3
NUM_HASHES = 32
BANDS = 8
_ROWS = NUM_HASHES // BANDS
_WORD = re.compile(r"\w+")
# Fixed hash parameters: the same text gets the same signature in every run. Hash i of a shingle is
# ((h ^ mask_i) * odd_i) mod 2**64 over a 64-bit blake2b digest h: multiplying by an odd number permutes
# 64-bit values and mixes low bits into high ones, so the 32 minima are (nearly) independent. A linear
# a*x+b below a prime would order most values like x itself, and all 32 minima would pick the same shingle.
_rng = np.random.default_rng(20240611)
_MASKS = _rng.integers(0, np.iinfo(np.uint64).max, size=NUM_HASHES, dtype=np.uint64, endpoint=True)
_ODD = _rng.integers(0, np.iinfo(np.uint64).max, size=NUM_HASHES, dtype=np.uint64, endpoint=True) | np.uint64(1)


def normalize_for_matching(text: str) -> str:
    """Lowercase words only: punctuation, case, accents' forms and spacing do not make texts differ."""
    return " ".join(_WORD.findall(unicodedata.normalize("NFKC", text).lower()))


def shingles(normalized: str) -> frozenset[str]:
    words = normalized.split()
    if len(words) <= SHINGLE_WORDS:
        return frozenset([normalized]) if normalized else frozenset()
    return frozenset(" ".join(words[i:i + SHINGLE_WORDS]) for i in range(len(words) - SHINGLE_WORDS + 1))


def jaccard(a: frozenset[str], b: frozenset[str]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def minhash_bands(shingle_set: frozenset[str]) -> list[tuple[int, bytes]]:
    if not shingle_set:
        return [(band, b"") for band in range(BANDS)]
    # blake2b (not Python's hash) so signatures do not depend on PYTHONHASHSEED
    digests = b"".join(hashlib.blake2b(s.encode(), digest_size=8).digest() for s in shingle_set)
    values = np.frombuffer(digests, dtype=np.uint64)
    signature = ((values[None, :] ^ _MASKS[:, None]) * _ODD[:, None]).min(axis=1)  # uint64 wraps mod 2**64
    return [(band, signature[band * _ROWS:(band + 1) * _ROWS].tobytes()) for band in range(BANDS)]


class NearDuplicateIndex:
    """Texts added so far, searchable for an exact (normalised) or near-duplicate match."""

    def __init__(self, threshold: float = 0.9):
        if not 0.0 < threshold <= 1.0:
            raise ValueError(f"near-duplicate threshold must be in (0, 1], got {threshold}")
        self.threshold = threshold
        self._exact: dict[str, object] = {}
        self._shingles: list[frozenset[str]] = []
        self._keys: list[object] = []
        self._buckets: dict[tuple[int, bytes], list[int]] = defaultdict(list)

    def __len__(self) -> int:
        return len(self._keys)

    def find_exact(self, text: str) -> object | None:
        return self._exact.get(normalize_for_matching(text))

    def find(self, text: str, near: bool = True) -> tuple[object, float] | None:
        """(key, similarity) of an indexed text that duplicates `text`, else None."""
        normalized = normalize_for_matching(text)
        if normalized in self._exact:
            return self._exact[normalized], 1.0
        if not near:
            return None
        sh = shingles(normalized)
        seen: set[int] = set()
        for band in minhash_bands(sh):
            for i in self._buckets.get(band, ()):
                if i in seen:
                    continue
                seen.add(i)
                similarity = jaccard(sh, self._shingles[i])
                if similarity >= self.threshold:
                    return self._keys[i], similarity
        return None

    def add(self, text: str, key: object) -> None:
        normalized = normalize_for_matching(text)
        self._exact.setdefault(normalized, key)
        sh = shingles(normalized)
        i = len(self._keys)
        self._keys.append(key)
        self._shingles.append(sh)
        for band in minhash_bands(sh):
            self._buckets[band].append(i)
