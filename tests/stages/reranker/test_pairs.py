"""Training-pair construction: own answer positive, hard negatives from the same domain, no leakage."""

from __future__ import annotations

import pytest

from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.prepare.records import make_record
from stages.reranker.pairs import (
    answers_question,
    build_answer_pools,
    build_training_pairs,
    chunk_training_pairs,
    drop_held_out_questions,
    facts_of,
    load_split,
    mine_hard_negatives,
    normalize,
    records_to_queries,
)
from tests.stages.reranker.conftest import HELD_OUT_TEMPLATE, qa_records


def test_positive_is_own_answer_and_negatives_are_other_answers(prepared_dir):
    train = records_to_queries(load_split(prepared_dir, "train"))
    rows = build_training_pairs(train, hard_negatives=3, miner="bm25", seed=0)
    assert len(rows) == len(train) * 4
    by_query: dict[str, list[dict]] = {}
    for row in rows:
        by_query.setdefault(row["query"], []).append(row)
    for q in train:
        q_rows = by_query[q.text]
        positives = [r["document"] for r in q_rows if r["label"] == 1.0]
        negatives = [r["document"] for r in q_rows if r["label"] == 0.0]
        assert positives == [q.answer]
        assert len(negatives) == 3 and len(set(negatives)) == 3
        assert all(normalize(n) != normalize(q.answer) for n in negatives)


def test_random_negatives_complement_hard_ones(prepared_dir):
    train = records_to_queries(load_split(prepared_dir, "train"))
    rows = build_training_pairs(train, hard_negatives=2, miner="bm25", seed=0, random_negatives=3)
    assert len(rows) == len(train) * 6
    hard = mine_hard_negatives(train, build_answer_pools(train), k=2, miner="bm25")
    for q, q_hard in zip(train, hard, strict=True):
        negatives = [r["document"] for r in rows if r["query"] == q.text and r["label"] == 0.0]
        assert len(negatives) == 5 and len(set(negatives)) == 5
        assert set(q_hard) <= set(negatives) and q.answer not in negatives
    # only random negatives: still never the question's own fact
    only_random = build_training_pairs(train, hard_negatives=0, seed=1, random_negatives=4)
    for row in only_random:
        if row["label"] == 0.0:
            q = next(q for q in train if q.text == row["query"])
            assert normalize(row["document"]) != normalize(q.answer)


def test_topic_negatives_are_the_other_facts_about_the_subject(prepared_dir):
    train = records_to_queries(load_split(prepared_dir, "train"))
    rows = build_training_pairs(train, hard_negatives=0, seed=0, topic_negatives=2)
    for q in train:
        negatives = {r["document"] for r in rows if r["query"] == q.text and r["label"] == 0.0}
        subject = q.fact_id.rpartition(".")[0]
        others = {o.answer for o in train if o.fact_id.rpartition(".")[0] == subject and o.fact_id != q.fact_id}
        assert negatives == others and len(others) == 2


def test_chunk_pairs_label_the_passage_holding_the_answer(prepared_dir, subject_index):
    from stages.inference.retrieval import Retriever

    train = records_to_queries(load_split(prepared_dir, "train"))
    rows = chunk_training_pairs(train, Retriever.load(subject_index), negatives=2)
    assert len(rows) == len(train) * 3  # every answer is in a passage among the 20 retrieved
    for q in train:
        q_rows = [r for r in rows if r["query"] == q.text]
        [positive] = [r["document"] for r in q_rows if r["label"] == 1.0]
        negatives = [r["document"] for r in q_rows if r["label"] == 0.0]
        assert q.answer in positive and len(negatives) == 2 and all(q.answer not in n for n in negatives)
        assert positive.split("\n", 1)[0].lower() == q.fact_id.split(".")[1]  # "title\ntext", the subject's sheet


def test_bm25_negatives_are_hard(prepared_dir):
    """BM25 picks answers about the same subject (shared words) before answers about other subjects."""
    train = records_to_queries(load_split(prepared_dir, "train"))
    negatives = mine_hard_negatives(train, build_answer_pools(train), k=2, miner="bm25")
    q = next(q for q in train if q.text == "What are the symptoms of asthma?")
    chosen = negatives[train.index(q)]
    assert all("asthma" in n for n in chosen), chosen


def test_paraphrases_of_one_fact_are_never_negatives():
    """Two questions with the same fact_id (different answer wording) or the same output: not negatives."""
    records = [
        make_record("healthcare", "What causes gout?", "Uric acid crystals in joints.", "synthetic", fact_id="gout.cause"),
        make_record("healthcare", "Why does gout happen?", "Crystals of uric acid deposit in joints.", "synthetic",
                    fact_id="gout.cause"),
        make_record("healthcare", "What is the origin of gout pain?", "Uric acid crystals in joints.", "synthetic"),
        make_record("healthcare", "How is gout treated?", "Colchicine, NSAIDs, then allopurinol.", "synthetic",
                    fact_id="gout.treatment"),
        make_record("healthcare", "Which drug prevents gout attacks?", "Allopurinol lowers uric acid.", "synthetic",
                    fact_id="gout.prevention"),
    ]
    queries = records_to_queries(records)
    rows = build_training_pairs(queries, hard_negatives=4, miner="bm25", seed=0)
    crystal_answers = {normalize("Uric acid crystals in joints."), normalize("Crystals of uric acid deposit in joints.")}
    # the third question has no fact_id but shares the first one's output text, hence its fact
    for q in queries[:3]:
        negatives = {normalize(r["document"]) for r in rows if r["query"] == q.text and r["label"] == 0.0}
        assert negatives and not negatives & crystal_answers, q.text
    pool = build_answer_pools(queries)["healthcare"]
    assert answers_question(pool[1], queries[0])
    assert not answers_question(pool[1], queries[2])  # without the pool's fact ids it would be a negative
    assert answers_question(pool[1], queries[2], facts_of(queries[2], pool))


def test_negatives_stay_inside_the_domain():
    records = qa_records((0,), domain="healthcare") + [
        make_record("legal", "What are the symptoms of a breach of contract?", "Failure to perform a duty.", "synthetic"),
        make_record("legal", "What is a tort?", "A civil wrong causing harm.", "synthetic"),
    ]
    queries = records_to_queries(records)
    rows = build_training_pairs(queries, hard_negatives=4, miner="bm25", seed=0)
    legal_answers = {"Failure to perform a duty.", "A civil wrong causing harm."}
    for row in rows:
        is_legal_query = row["query"] in {q.text for q in queries if q.domain == "legal"}
        assert (row["document"] in legal_answers) == is_legal_query, row


def test_no_test_question_or_answer_enters_training(prepared_dir):
    """Pairs are built from the train split only: test questions never appear, and a test question copied
    into train (a leak upstream) is dropped."""
    train_records = load_split(prepared_dir, "train")
    test_records = load_split(prepared_dir, "test")
    leaked = test_records[0]
    train = records_to_queries(train_records + [leaked])
    test = records_to_queries(test_records)
    kept = drop_held_out_questions(train, test)
    assert len(kept) == len(train) - 1
    rows = build_training_pairs(kept, hard_negatives=4, miner="bm25", seed=0)
    test_texts = {normalize(q.text) for q in test}
    assert not {normalize(r["query"]) for r in rows} & test_texts
    # documents come from train answers only
    assert {r["document"] for r in rows} <= {q.answer for q in kept}
    assert {r["template_id"].split(".")[1] for r in test_records} == {str(HELD_OUT_TEMPLATE)}


def test_pairs_are_deterministic_for_a_seed(prepared_dir):
    train = records_to_queries(load_split(prepared_dir, "train"))
    assert build_training_pairs(train, 2, "bm25", seed=1) == build_training_pairs(train, 2, "bm25", seed=1)
    assert build_training_pairs(train, 2, "bm25", seed=1) != build_training_pairs(train, 2, "bm25", seed=2)


def test_embedding_miner_uses_the_bundled_minilm(prepared_dir):
    train = records_to_queries(load_split(prepared_dir, "train"))
    negatives = mine_hard_negatives(train, build_answer_pools(train), k=2, miner="embedding")
    q = next(q for q in train if q.text == "How is migraine treated?")
    chosen = negatives[train.index(q)]
    assert len(chosen) == 2 and q.answer not in chosen
    assert any("migraine" in n or "treatment" in n for n in chosen), chosen


def test_bad_split_files_are_clear_errors(tmp_path):
    with pytest.raises(StageError, match=r"train.jsonl: prepared split not found"):
        load_split(tmp_path, "train")
    record = make_record("healthcare", "Q?", "A.", "synthetic")
    record["output"] = ""
    write_jsonl(tmp_path / "train.jsonl", [make_record("healthcare", "Q1?", "A1.", "synthetic"), record])
    with pytest.raises(StageError, match=r"train.jsonl: record 2 .*field 'output'"):
        load_split(tmp_path, "train")
    with pytest.raises(StageError, match="hard_negatives=0"):
        build_training_pairs(records_to_queries([make_record("h", "Q?", "A.", "synthetic")]), 0)
