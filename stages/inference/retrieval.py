"""Retrieval over the index stage's output: BM25 and MiniLM embeddings fused (reciprocal rank fusion), then the
trained cross-encoder reranks the fused candidates. Shared by the server (/api/v1/ask) and evaluation.

    retriever = Retriever.load(Path("models/index"))
    hits = retriever.search("How is asthma treated?", top_k=4, mode="hybrid", reranker=load_reranker(...))
    # [Hit(chunk=Chunk(chunk_id, doc_id, title, text), score, ranks={"bm25": 1, "embedding": 2, "hybrid": 1,
    #      "rerank": 1}, rerank_score=0.97)]

Modes: "bm25", "embedding", "hybrid" (fused). A reranker, when given, scores the top `candidates` of the mode,
and the final order fuses its rank with the first-stage retrievers' ranks (`fuse_reranked`): on short passages
the cross-encoder alone orders worse than the embeddings (MRR@10 0.834 vs 0.849 over all chunks on the
healthcare validation questions), but it errs on other questions than they do, so the fusion beats each
(0.967; reordering by the reranker alone: 0.876).
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
    ranks: dict[str, int] = field(default_factory=dict)  # 1-based rank by each retriever (and the reranker)
    rerank_score: float | None = None


def reranker_text(chunk: Chunk) -> str:
    """What the reranker reads of a chunk (it was trained on title + passage)."""
    return f"{chunk.title}\n{chunk.text}"


def ranks_of(scores: np.ndarray) -> np.ndarray:
    """1-based rank of each score, highest first; ties keep index order."""
    ranks = np.empty(len(scores), dtype=np.int64)
    ranks[np.argsort(-scores, kind="stable")] = np.arange(1, len(scores) + 1)
    return ranks


def fuse_reranked(pool: Sequence[Hit], reranked: Sequence[dict], top_k: int) -> list[Hit]:
    """The `top_k` best of `pool` (a search's hits) by reciprocal rank fusion of the reranker's rank with the
    ranks of the first-stage retrievers each hit carries. `reranked` is the reranker's output over the pool's
    `reranker_text`s, all of them ({"original_index", "rank", "score"})."""
    if len(reranked) != len(pool):
        raise ValueError(f"the reranker scored {len(reranked)} of {len(pool)} pooled passages; score them all")
    fused = []
    for r in reranked:
        hit = pool[r["original_index"]]
        firsts = [rank for mode, rank in hit.ranks.items() if mode in ("bm25", "embedding")]
        score = sum(1.0 / (RRF_K + rank) for rank in [r["rank"], *firsts])
        fused.append(Hit(hit.chunk, round(score, 6), {**hit.ranks, "rerank": int(r["rank"])},
                         round(float(r["score"]), 4)))
    fused.sort(key=lambda h: (-h.score, h.ranks["rerank"]))
    return fused[:top_k]


def embed_with_minilm(texts: Sequence[str]) -> np.ndarray:
    """Unit-length MiniLM embeddings (the bundled model, its own max length), float32, one row per text; safe
    from any thread (the model is shared with the router and the bi-encoder reranker, see reranker.py)."""
    from stages.inference.reranker import encode_with_minilm

    return encode_with_minilm(texts)


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
            return sum(1.0 / (RRF_K + ranks) for ranks in self.single_ranks(query).values())
        raise StageError(f"retrieval mode {mode!r}: use one of {', '.join(MODES)}")

    def single_ranks(self, query: str) -> dict[str, np.ndarray]:
        return {single: ranks_of(self.scores(query, single)) for single in ("bm25", "embedding")}

    def search(self, query: str, top_k: int = 4, mode: str = "hybrid", reranker=None,
               candidates: int = 20) -> list[Hit]:
        """The `top_k` best chunks, each with its rank by every retriever used; with a reranker, the top
        `candidates` of `mode` reordered by `fuse_reranked`."""
        if not query.strip():
            raise StageError("retrieval: the query is empty")
        if mode == "hybrid":
            rank_by = self.single_ranks(query)
            scores = sum(1.0 / (RRF_K + ranks) for ranks in rank_by.values())
        else:
            scores = self.scores(query, mode)
            rank_by = {}
        rank_by[mode] = ranks_of(scores)
        n = max(candidates, top_k) if reranker is not None else top_k
        hits = [Hit(self.chunks[i], round(float(scores[i]), 4), {m: int(r[i]) for m, r in rank_by.items()})
                for i in np.argsort(-scores, kind="stable")[:n]]
        if reranker is None:
            return hits
        return fuse_reranked(hits, reranker.rerank(query, [reranker_text(h.chunk) for h in hits]), top_k)
