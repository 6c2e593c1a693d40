"""Retrieval metrics of the rerankers on held-out questions: BM25, bi-encoder, untrained and trained cross-encoder.

    from stages.reranker.evaluate import build_candidate_sets, score_bm25, ranking_metrics
    sets = build_candidate_sets(test_queries, pools, n_candidates=50, seed=42)
    ranking_metrics(sets, score_bm25(sets, pools))   # {"mrr_at_10": ..., "ndcg_at_10": ..., ...}

Each test question is ranked against a candidate set: its own answer plus distractors from the unique answers
of its domain (all splits), skipping answers to the same fact. Hard candidates first: every other fact about
the question's subject (the same condition / concept / term), then the same field of other subjects (other
conditions' symptoms for a symptoms question), then random answers of the domain (seeded) up to the set size.
Against random answers alone every method was at or near MRR 1.00 (saturated); a question naming its subject
must now tell apart the facts about that subject. No method picks the distractors, so the comparison favours
none of them. Exactly one candidate is relevant.
Candidates are shuffled before scoring and sorting is stable, so ties never favour the right answer.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from stages.reranker.pairs import Answer, Query, answers_question, facts_of, normalize, subject_of, tokenize

CUTOFF = 10
METRIC_NAMES = ("mrr_at_10", "ndcg_at_10", "recall_at_1", "recall_at_5")


@dataclass(frozen=True)
class CandidateSet:
    query: Query
    documents: list[str]
    relevant: list[int]  # 1 for the question's own answer, else 0; same order as documents


# ---- metrics over one ranked list of binary relevance labels (best first) ----

def reciprocal_rank(ranked_relevance: Sequence[int], k: int = CUTOFF) -> float:
    for position, rel in enumerate(ranked_relevance[:k], start=1):
        if rel:
            return 1.0 / position
    return 0.0


def ndcg(ranked_relevance: Sequence[int], k: int = CUTOFF) -> float:
    dcg = sum(rel / math.log2(pos + 1) for pos, rel in enumerate(ranked_relevance[:k], start=1))
    ideal = sorted(ranked_relevance, reverse=True)[:k]
    idcg = sum(rel / math.log2(pos + 1) for pos, rel in enumerate(ideal, start=1))
    return dcg / idcg if idcg > 0 else 0.0


def recall(ranked_relevance: Sequence[int], k: int) -> float:
    total = sum(ranked_relevance)
    return sum(ranked_relevance[:k]) / total if total else 0.0


def rank_relevance(scores: Sequence[float], relevant: Sequence[int]) -> list[int]:
    """Relevance labels in score order, best first (stable for ties)."""
    order = sorted(range(len(scores)), key=lambda i: -scores[i])
    return [relevant[i] for i in order]


def ranking_metrics(candidate_sets: Sequence[CandidateSet], scores: Sequence[Sequence[float]]) -> dict[str, float]:
    """Mean MRR@10, NDCG@10, Recall@1 and Recall@5 over the candidate sets."""
    per_query = {name: [] for name in METRIC_NAMES}
    for cset, set_scores in zip(candidate_sets, scores, strict=True):
        ranked = rank_relevance(set_scores, cset.relevant)
        per_query["mrr_at_10"].append(reciprocal_rank(ranked, CUTOFF))
        per_query["ndcg_at_10"].append(ndcg(ranked, CUTOFF))
        per_query["recall_at_1"].append(recall(ranked, 1))
        per_query["recall_at_5"].append(recall(ranked, 5))
    return {name: round(float(np.mean(values)), 4) if values else 0.0 for name, values in per_query.items()}


# ---- candidate sets ----

def _hardness(answer: Answer, subject: str | None, field: str | None) -> int:
    """0: about the question's subject; 1: the same field of another subject; 2: anything else."""
    subjects = {subject_of(f) for f in answer.fact_ids}
    fields = {f.rpartition(".")[2] for f in answer.fact_ids}
    if subject is not None and subject in subjects:
        return 0
    return 1 if field is not None and field in fields else 2


def build_candidate_sets(queries: Sequence[Query], pools: dict[str, list[Answer]], n_candidates: int,
                         seed: int) -> list[CandidateSet]:
    """Own answer + up to `n_candidates - 1` non-answers of the domain, hardest first (0: every non-answer)."""
    rng = random.Random(seed)
    sets = []
    for q in queries:
        pool = pools.get(q.domain, [])
        query_facts = facts_of(q, pool)
        subject, field = subject_of(q.fact_id), q.fact_id.rpartition(".")[2] if q.fact_id else None
        tiers: list[list[str]] = [[], [], []]
        for a in pool:
            if not answers_question(a, q, query_facts):
                tiers[_hardness(a, subject, field)].append(a.text)
        distractors = []
        for tier in tiers:
            rng.shuffle(tier)
            distractors.extend(tier)
        if n_candidates > 0:
            distractors = distractors[:n_candidates - 1]
        documents = [q.answer, *distractors]
        relevant = [1] + [0] * len(distractors)
        order = list(range(len(documents)))
        rng.shuffle(order)
        sets.append(CandidateSet(q, [documents[i] for i in order], [relevant[i] for i in order]))
    return sets


# ---- scorers: one list of scores per candidate set ----

def score_bm25(candidate_sets: Sequence[CandidateSet], pools: dict[str, list[Answer]]) -> list[list[float]]:
    """Okapi BM25 with term statistics from the whole domain answer pool (as a search index would have)."""
    from rank_bm25 import BM25Okapi

    indexes: dict[str, tuple[BM25Okapi, dict[str, int]]] = {}
    for domain, pool in pools.items():
        bm25 = BM25Okapi([tokenize(a.text) or [""] for a in pool])
        indexes[domain] = (bm25, {normalize(a.text): i for i, a in enumerate(pool)})
    scores = []
    for cset in candidate_sets:
        bm25, position = indexes[cset.query.domain]
        all_scores = bm25.get_scores(tokenize(cset.query.text))
        scores.append([float(all_scores[position[normalize(d)]]) for d in cset.documents])
    return scores


def score_pairs(candidate_sets: Sequence[CandidateSet],
                predict: Callable[[list[tuple[str, str]]], list[float]]) -> list[list[float]]:
    """Score every (question, candidate) pair with one batched `predict` call (a Reranker's predict)."""
    pairs = [(cset.query.text, d) for cset in candidate_sets for d in cset.documents]
    flat = predict(pairs)
    scores, start = [], 0
    for cset in candidate_sets:
        scores.append(list(flat[start:start + len(cset.documents)]))
        start += len(cset.documents)
    return scores


def prefixed(method: str, metrics: dict[str, float]) -> dict[str, float]:
    """{"mrr_at_10": x} -> {"<method>_mrr_at_10": x}: flat keys for `dvc metrics`."""
    return {f"{method}_{name}": value for name, value in metrics.items()}
