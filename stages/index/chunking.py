"""Documents cut into overlapping chunks on paragraph boundaries, so a fact is rarely split between chunks.

    chunk_text("para one...\n\npara two...", max_words=80, overlap_words=20)   # ["...", "..."]

Paragraphs are packed into a chunk up to `max_words`; the next chunk starts with the previous chunk's last
paragraphs that fit in `overlap_words`. A paragraph longer than `max_words` is cut into word windows that
overlap by `overlap_words`.
"""

from __future__ import annotations

import re

from stages.errors import StageError


def _paragraphs(text: str, max_words: int, overlap_words: int) -> list[list[str]]:
    out = []
    for block in re.split(r"\n\s*\n", text):
        words = block.split()
        if not words:
            continue
        step = max_words - overlap_words
        if len(words) <= max_words:
            out.append(words)
        else:
            out.extend(words[i:i + max_words] for i in range(0, max(len(words) - overlap_words, 1), step))
    return out


def chunk_text(text: str, max_words: int = 80, overlap_words: int = 20) -> list[str]:
    if max_words < 1 or not 0 <= overlap_words < max_words:
        raise StageError(f"index chunking: need max_words >= 1 and 0 <= overlap_words < max_words "
                         f"(got {max_words}, {overlap_words}); fix index.chunk_words / index.overlap_words")
    paragraphs = _paragraphs(text, max_words, overlap_words)
    chunks: list[list[list[str]]] = []
    current: list[list[str]] = []
    for paragraph in paragraphs:
        if current and sum(map(len, current)) + len(paragraph) > max_words:
            chunks.append(current)
            tail: list[list[str]] = []
            for previous in reversed(current):  # overlap: whole trailing paragraphs within overlap_words
                if sum(map(len, tail)) + len(previous) > overlap_words:
                    break
                tail.insert(0, previous)
            current = tail
        current.append(paragraph)
    if current:  # never only the overlap: every pass appends a new paragraph after it
        chunks.append(current)
    return ["\n\n".join(" ".join(p) for p in chunk) for chunk in chunks]
