"""Ranking metrics against hand-computed values, and candidate sets that favour no method."""

from __future__ import annotations

import math

import pytest

from stages.reranker.evaluate import (
    build_candidate_sets,
    ndcg,
    rank_relevance,
    ranking_metrics,
    recall,
    reciprocal_rank,
    score_bm25,
)
from stages.reranker.pairs import build_answer_pools, normalize, records_to_queries
from tests.stages.reranker.conftest import qa_records


def test_metrics_by_hand():
    # relevant document at rank 3 of 12
    ranked = [0, 0, 1] + [0] * 9
    assert reciprocal_rank(ranked) == pytest.approx(1 / 3)
    assert ndcg(ranked) == pytest.approx(1 / math.log2(4))  # = 0.5
    assert recall(ranked, 1) == 0.0 and recall(ranked, 5) == 1.0
    # relevant at rank 11: outside @10
    late = [0] * 10 + [1]
    assert reciprocal_rank(late) == 0.0 and ndcg(late) == 0.0 and recall(late, 5) == 0.0
    # two relevant at ranks 1 and 3: DCG = 1 + 1/2, IDCG = 1 + 1/log2(3)
    two = [1, 0, 1, 0]
    assert ndcg(two) == pytest.approx(1.5 / (1 + 1 / math.log2(3)))
    assert recall(two, 1) == 0.5 and reciprocal_rank(two) == 1.0


def test_rank_relevance_keeps_ties_in_candidate_order():
    assert rank_relevance([0.2, 0.9, 0.5], [1, 0, 0]) == [0, 0, 1]
    assert rank_relevance([0.5, 0.5], [0, 1]) == [0, 1]  # tie: no credit for the relevant one


def test_ranking_metrics_average_over_queries():
    sets = build_candidate_sets(records_to_queries(qa_records((2,))[:2]),
                                build_answer_pools(records_to_queries(qa_records((0,)))), n_candidates=4, seed=0)
    # oracle on the first query, relevant-last on the second
    scores = [[float(r) for r in sets[0].relevant], [-float(r) for r in sets[1].relevant]]
    m = ranking_metrics(sets, scores)
    assert m["mrr_at_10"] == pytest.approx((1 + 1 / 4) / 2, abs=1e-4)
    assert m["recall_at_1"] == 0.5 and m["recall_at_5"] == 1.0
    assert m["ndcg_at_10"] == pytest.approx((1 + 1 / math.log2(5)) / 2, abs=1e-4)


def test_candidate_sets_hold_one_relevant_answer_and_no_paraphrase():
    pools = build_answer_pools(records_to_queries(qa_records((0, 1, 2))))
    test = records_to_queries(qa_records((2,)))
    sets = build_candidate_sets(test, pools, n_candidates=5, seed=3)
    for cset in sets:
        assert len(cset.documents) == 5 and sum(cset.relevant) == 1
        assert normalize(cset.documents[cset.relevant.index(1)]) == normalize(cset.query.answer)
    # the relevant answer is not always first (shuffled), and 0 means the whole pool
    assert len({cset.relevant.index(1) for cset in sets}) > 1
    full = build_candidate_sets(test, pools, n_candidates=0, seed=3)
    assert all(len(c.documents) == len(pools["healthcare"]) for c in full)


def test_candidate_sets_hold_the_subjects_other_facts_first():
    """Hardest distractors first: the subject's other facts, then the same field of other subjects."""
    pools = build_answer_pools(records_to_queries(qa_records((0, 1, 2))))
    test = records_to_queries(qa_records((2,)))
    for cset in build_candidate_sets(test, pools, n_candidates=3 + 4, seed=1):
        subject, _, field = cset.query.fact_id.rpartition(".")
        name = subject.split(".", 1)[1]
        distractors = [d for d, rel in zip(cset.documents, cset.relevant, strict=True) if not rel]
        same_subject = [d for d in distractors if f" of {name}:" in d]
        same_field = [d for d in distractors if d.startswith(f"The {field} of ") and f" of {name}:" not in d]
        assert len(same_subject) == 2 and len(same_field) == 4, distractors


def test_bm25_scores_the_matching_answer_highest():
    pools = build_answer_pools(records_to_queries(qa_records((0, 1, 2))))
    sets = build_candidate_sets(records_to_queries(qa_records((0,))), pools, n_candidates=0, seed=0)
    metrics = ranking_metrics(sets, score_bm25(sets, pools))
    assert 0.5 < metrics["mrr_at_10"] <= 1.0
