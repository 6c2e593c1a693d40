"""`domain-llm retrieval` (the `retrieval@<domain>` stages): how well each retriever finds the passage that
holds a test question's answer -> metrics/<domain>/retrieval.json, on the held-out-facts split (test_facts: facts no
training record states) with the paraphrase test split beside it (`paraphrase_split`).

    domain-llm retrieval --params params.yaml --domain legal    # as dvc.yaml runs retrieval@legal

A question's relevant chunks are those whose text contains its reference answer verbatim (the fact sheets hold
every answer as a paragraph); questions with none (your own documents) are left out and counted. Chunk level,
not document level: the question names its subject, so finding the right document is easy for every
retriever (MRR 1.00 on the healthcare test split), while finding the passage with the asked fact is not.
Retrievers: BM25, MiniLM embeddings, hybrid (reciprocal rank fusion), and hybrid + the reranker in
paths.reranker (the trained cross-encoder, else the bundled bi-encoder; the metrics say which): `hybrid_rerank`
is what /api/v1/ask uses (the reranker's rank fused with the retrievers', `fuse_reranked`), `rerank_only` the same
candidates in the reranker's own order.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError
from stages.fileio import read_jsonl, write_json
from stages.inference.retrieval import Retriever

log = logging.getLogger(__name__)
K = 10


def rank_of_first_relevant(hits, relevant: set[str]) -> int | None:
    return next((rank for rank, hit in enumerate(hits, start=1) if hit.chunk.chunk_id in relevant), None)


def retrieval_metrics(ranks: list[int | None]) -> dict:
    n = len(ranks)
    return {"mrr_at_10": round(sum(1 / r for r in ranks if r) / n, 4),
            "recall_at_1": round(sum(1 for r in ranks if r == 1) / n, 4),
            "recall_at_5": round(sum(1 for r in ranks if r and r <= 5) / n, 4),
            "recall_at_10": round(sum(1 for r in ranks if r) / n, 4)}


def evaluate_retrievers(retriever: Retriever, questions: list[dict], reranker, candidates: int = 20) -> dict:
    """{retriever name: metrics} over the questions that have a relevant chunk."""
    judged = []
    for q in questions:
        relevant = {c.chunk_id for c in retriever.chunks if q["output"].strip() in c.text}
        if relevant:
            judged.append((q["instruction"], relevant))
    if not judged:
        raise StageError("retrieval evaluation: no test answer appears in any indexed chunk; index the domain's "
                         "documents (or leave index.docs_dir empty for the fact sheets)")
    ranks: dict[str, list[int | None]] = {"bm25": [], "embedding": [], "hybrid": [], "hybrid_rerank": [],
                                          "rerank_only": []}
    for question, relevant in judged:
        for mode in ("bm25", "embedding", "hybrid"):
            ranks[mode].append(rank_of_first_relevant(retriever.search(question, K, mode), relevant))
        pool = retriever.search(question, candidates, "hybrid", reranker=reranker, candidates=candidates)
        ranks["hybrid_rerank"].append(rank_of_first_relevant(pool[:K], relevant))
        by_reranker = sorted(pool, key=lambda hit: hit.ranks["rerank"])[:K]
        ranks["rerank_only"].append(rank_of_first_relevant(by_reranker, relevant))
    out = {name: retrieval_metrics(r) for name, r in ranks.items()}
    out["questions"], out["questions_without_relevant_chunk"] = len(judged), len(questions) - len(judged)
    return out


def main(cfg: DictConfig) -> None:
    from stages.inference.reranker import served_reranker

    started = time.perf_counter()
    data_dir = Path(str(cfg.paths.processed)) / str(cfg.domain.name)
    splits = {name: read_jsonl(data_dir / f"{name}.jsonl") for name in ("test_facts", "test")
              if (data_dir / f"{name}.jsonl").is_file()}
    splits = {name: records for name, records in splits.items() if records}
    if not splits:
        raise StageError(f"{data_dir}: no test_facts.jsonl or test.jsonl with questions; run the prepare stage first")
    retriever = Retriever.load(Path(str(cfg.paths.index)))
    # the reranker the server uses: the bi-encoder when the trained cross-encoder measured below it
    reranker, note = served_reranker(str(cfg.paths.reranker), bool(cfg.serve.rerank_below_biencoder))
    # The headline split is the held-out facts (questions about facts no training record states) when there are
    # any; the paraphrase test split is reported beside it.
    primary = next(iter(splits))
    metrics = {"split": primary, **evaluate_retrievers(retriever, splits[primary], reranker)}
    if primary == "test_facts" and "test" in splits:
        metrics["paraphrase_split"] = evaluate_retrievers(retriever, splits["test"], reranker)
    metrics["reranker"] = reranker.info().get("type", "unknown")
    if note:
        metrics["reranker_note"] = note
    metrics["seconds"] = round(time.perf_counter() - started, 2)
    write_json(Path(str(cfg.paths.metrics)) / "retrieval.json", metrics)
    log.info("retrieval (chunk level, %s, %d questions): %s", primary, metrics["questions"],
             {k: v["mrr_at_10"] for k, v in metrics.items() if isinstance(v, dict) and "mrr_at_10" in v})
