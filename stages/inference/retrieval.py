"""Retrieval over the index stage's output: BM25 and MiniLM embeddings fused (reciprocal rank fusion), then the
trained cross-encoder reranks the fused candidates. Shared by the server (/api/v1/ask) and evaluation.

    retriever = Retriever.load(Path("models/index"))
    hits = retriever.search("How is asthma treated?", top_k=4, mode="hybrid", reranker=load_reranker(...))
    # [Hit(chunk=Chunk(chunk_id, doc_id, title, text), score, ranks={"bm25": 1, "embedding": 2})]

Modes: "bm25", "embedding", "hybrid" (fused); a reranker, when given, reorders the top `candidates` of the mode.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from stages.errors import StageError

MODES = ("bm25", "embedding", "hybrid")
RRF_K = 60  # reciprocal rank fusion's usual constant: 1 / (60 + rank)
CHUNKS_FILE, EMBEDDINGS_FILE, MANIFEST_FILE = "chunks.jsonl", "embeddings.npy", "manifest.json"
TOKEN = re.compile(r"\w+", re.UNICODE)


def bm25_tokens(text: str) -> list[str]:
    return TOKEN.findall(text.lower())


@dataclass(frozen=True)
class Chunk:
    chunk_id: str
    doc_id: str
    title: str
    text: str


@dataclass
class Hit:
    chunk: Chunk
    score: float
    ranks: dict[str, int] = field(default_factory=dict)


def embed_with_minilm(texts: Sequence[str]) -> np.ndarray:
    """Unit-length MiniLM embeddings (the bundled model), float32, one row per text."""
    from stages.inference.reranker import bundled_bi_encoder

    vectors = bundled_bi_encoder().encode(list(texts), batch_size=32, normalize_embeddings=True,
                                          convert_to_numpy=True, show_progress_bar=False)
    return np.asarray(vectors, dtype=np.float32)


class Retriever:
    def __init__(self, chunks: list[Chunk], embeddings: np.ndarray,
                 embed: Callable[[Sequence[str]], np.ndarray] = embed_with_minilm):
        from rank_bm25 import BM25Okapi

        if len(chunks) != len(embeddings):
            raise StageError(f"index: {len(chunks)} chunks but {len(embeddings)} embeddings; rerun the index stage")
        if not chunks:
            raise StageError("index: no chunks; add documents to index.docs_dir and rerun the index stage")
        self.chunks, self.embeddings, self.embed = chunks, embeddings, embed
        self.bm25 = BM25Okapi([bm25_tokens(c.title + " " + c.text) for c in chunks])

    @classmethod
    def load(cls, folder: str | Path) -> Retriever:
        folder = Path(folder)
        paths = [folder / CHUNKS_FILE, folder / EMBEDDINGS_FILE]
        missing = next((p for p in paths if not p.is_file()), None)
        if missing:
            raise StageError(f"{missing}: missing; run the index stage (`dvc repro index`)")
        chunks = [Chunk(**json.loads(line)) for line in paths[0].read_text().splitlines() if line.strip()]
        return cls(chunks, np.load(paths[1]))

    def info(self) -> dict:
        return {"chunks": len(self.chunks), "documents": len({c.doc_id for c in self.chunks})}

    def scores(self, query: str, mode: str) -> np.ndarray:
        """One score per chunk (higher is better): BM25, cosine similarity, or the reciprocal-rank fusion."""
        if mode == "bm25":
            return np.asarray(self.bm25.get_scores(bm25_tokens(query)), dtype=np.float64)
        if mode == "embedding":
            return (self.embeddings @ self.embed([query])[0]).astype(np.float64)
        if mode == "hybrid":
            fused = np.zeros(len(self.chunks))
            for single in ("bm25", "embedding"):
                order = np.argsort(-self.scores(query, single), kind="stable")
                fused[order] += 1.0 / (RRF_K + np.arange(1, len(order) + 1))
            return fused
        raise StageError(f"retrieval mode {mode!r}: use one of {', '.join(MODES)}")

    def search(self, query: str, top_k: int = 4, mode: str = "hybrid", reranker=None,
               candidates: int = 20) -> list[Hit]:
        """The `top_k` best chunks; with a reranker, the top `candidates` of `mode` reordered by it (its score)."""
        if not query.strip():
            raise StageError("retrieval: the query is empty")
        scores = self.scores(query, mode)
        order = [int(i) for i in np.argsort(-scores, kind="stable")]
        if reranker is None:
            return [Hit(self.chunks[i], round(float(scores[i]), 4), {mode: rank + 1})
                    for rank, i in enumerate(order[:top_k])]
        pool = order[:max(candidates, top_k)]
        texts = [f"{self.chunks[i].title}\n{self.chunks[i].text}" for i in pool]
        reranked = reranker.rerank(query, texts, top_k=top_k)
        return [Hit(self.chunks[pool[r["original_index"]]], round(float(r["score"]), 4),
                    {mode: r["original_index"] + 1, "rerank": r["rank"]}) for r in reranked]
