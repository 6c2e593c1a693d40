"""Log-probabilities of generated and prompt tokens, as OpenAI's `logprobs` / `top_logprobs` report them.

    record = TokenLogprob.of(logits_row, token, top_n, detokenize)   # one sampled token (GGUF engine)
    piece = Piece("text", [record, ...])                              # a streamed piece and its tokens
    generation.logprobs                                               # every generated token's record

Values are the model's own distribution: log-softmax of the raw logits at that position, before sampling
settings (temperature, top-k/p, penalties, grammar) reshape it, as vLLM and llama-server report by default.
A token's text is its bytes decoded with replacement (a multi-byte character split over tokens shows U+FFFD);
`bytes` keeps the exact bytes, as OpenAI does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

MAX_TOP_LOGPROBS = 20  # OpenAI's bound


@dataclass
class TokenLogprob:
    token_id: int
    text_bytes: bytes
    logprob: float | None  # None: the first prompt token, which nothing predicts
    top: list[tuple[int, bytes, float]] = field(default_factory=list)  # (id, bytes, logprob), best first

    @property
    def text(self) -> str:
        return self.text_bytes.decode("utf-8", errors="replace")

    @classmethod
    def of(cls, logits: np.ndarray, token: int, top_n: int, detokenize: Callable[[int], bytes]) -> TokenLogprob:
        """The record of `token` from the logits row that predicted it (float32 or float64, n_vocab)."""
        log_probs = log_softmax(logits)
        return cls(token, detokenize(token), float(log_probs[token]), top_of(log_probs, top_n, detokenize))


def log_softmax(logits: np.ndarray) -> np.ndarray:
    row = np.asarray(logits, dtype=np.float64)
    shifted = row - row.max()
    return shifted - np.log(np.exp(shifted).sum())


def top_of(log_probs: np.ndarray, top_n: int, detokenize: Callable[[int], bytes]) -> list[tuple[int, bytes, float]]:
    if top_n <= 0:
        return []
    best = np.argpartition(-log_probs, top_n - 1)[:top_n]
    best = best[np.argsort(-log_probs[best], kind="stable")]
    return [(int(i), detokenize(int(i)), float(log_probs[i])) for i in best]


class Piece(str):
    """A streamed text piece with the records of the tokens that produced it (tokens whose text was held back
    -- an incomplete character, a possible stop string -- come with the next piece)."""

    logprobs: list[TokenLogprob]

    def __new__(cls, text: str, logprobs: Sequence[TokenLogprob] = ()) -> Piece:
        piece = super().__new__(cls, text)
        piece.logprobs = list(logprobs)
        return piece


def openai_chat_logprobs(records: Sequence[TokenLogprob]) -> dict:
    """`choices[].logprobs` of a chat completion: {"content": [{token, logprob, bytes, top_logprobs}]}."""
    def entry(text_bytes: bytes, logprob: float) -> dict:
        return {"token": text_bytes.decode("utf-8", errors="replace"), "logprob": logprob,
                "bytes": list(text_bytes)}

    return {"content": [{**entry(r.text_bytes, r.logprob),
                         "top_logprobs": [entry(b, lp) for _, b, lp in r.top]} for r in records]}


def openai_completion_logprobs(records: Sequence[TokenLogprob], start_offset: int = 0) -> dict:
    """`choices[].logprobs` of a (legacy) completion: tokens, token_logprobs, top_logprobs (a token -> logprob
    mapping per position; None where nothing predicted the token) and text_offset."""
    offsets, at = [], start_offset
    for r in records:
        offsets.append(at)
        at += len(r.text)

    def top(r: TokenLogprob) -> dict[str, float] | None:
        if r.logprob is None:
            return None
        best: dict[str, float] = {}
        for _, text_bytes, logprob in r.top:  # best first: two ids with one text keep the better
            best.setdefault(text_bytes.decode("utf-8", errors="replace"), logprob)
        return best

    return {"tokens": [r.text for r in records], "token_logprobs": [r.logprob for r in records],
            "top_logprobs": [top(r) for r in records], "text_offset": offsets}
