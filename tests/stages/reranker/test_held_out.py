"""Held-out facts stay out of the reranker's training: passage pairs skip index passages that state them, and
the stage refuses a pair whose question or answer does."""

from __future__ import annotations

import json
import re

import pytest

from stages.errors import StageError
from stages.fileio import write_jsonl
from stages.prepare.records import make_record
from stages.reranker.main import main
from stages.reranker.pairs import (
    build_training_pairs,
    check_pairs,
    chunk_training_pairs,
    held_out_answers,
    load_split,
    records_to_queries,
)
from tests.stages.reranker.conftest import HELD_OUT_TEMPLATE, qa_records
from tests.stages.reranker.test_main import stage_cfg

# asked only by test_facts; their paragraphs are in the subject index like every other fact's
HELD_OUT = {"healthcare.asthma.cause", "healthcare.migraine.treatment", "healthcare.influenza.symptoms"}


def taught(template: int) -> list[dict]:
    return [r for r in qa_records((template,)) if r["fact_id"] not in HELD_OUT]


@pytest.fixture()
def held_out_dir(tmp_path):
    """data/processed/healthcare with test_facts asking HELD_OUT, which no other split states."""
    out = tmp_path / "processed" / "healthcare"
    write_jsonl(out / "train.jsonl", taught(0))
    write_jsonl(out / "validation.jsonl", taught(1)[:6])
    write_jsonl(out / "test.jsonl", taught(HELD_OUT_TEMPLATE))
    write_jsonl(out / "test_facts.jsonl", [r for r in qa_records((1, 2)) if r["fact_id"] in HELD_OUT])
    return out


def queries_of(folder, *splits):
    return {split: records_to_queries(load_split(folder, split)) for split in splits}


def test_passage_pairs_skip_passages_that_state_a_held_out_fact(held_out_dir, subject_index):
    from stages.inference.retrieval import Retriever

    q = queries_of(held_out_dir, "train", "validation", "test_facts")
    held_out = held_out_answers({"test_facts": q["test_facts"]}, q["train"] + q["validation"])
    answers = {x.answer for x in q["test_facts"]}
    assert len(answers) == len(HELD_OUT)
    retriever = Retriever.load(subject_index)
    unfiltered = chunk_training_pairs(q["train"], retriever, negatives=2)
    assert [r for r in unfiltered if any(a in r["document"] for a in answers)]  # what the filter removes
    rows = chunk_training_pairs(q["train"], retriever, negatives=2, held_out=held_out)
    assert rows and not [r for r in rows if any(a in r["document"] for a in answers)]
    for question in {r["query"] for r in rows}:
        [positive] = [r["document"] for r in rows if r["query"] == question and r["label"] == 1.0]
        assert next(x.answer for x in q["train"] if x.text == question) in positive
    check_pairs(rows + build_training_pairs(q["train"], 2, seed=0, topic_negatives=2), q["train"], held_out)


def test_a_pair_stating_a_held_out_fact_is_refused_in_one_line(held_out_dir):
    q = queries_of(held_out_dir, "train", "validation", "test_facts")
    asked = next(x for x in q["test_facts"] if x.fact_id == "healthcare.asthma.cause")
    held_out = held_out_answers({"test_facts": q["test_facts"]}, q["train"] + q["validation"])
    train = q["train"]
    rows = [{"query": train[0].text, "document": train[0].answer, "label": 1.0},
            {"query": train[0].text, "document": f"Asthma\n{asked.answer}", "label": 0.0}]
    check_pairs(rows[:1], train, held_out)
    with pytest.raises(StageError) as error:
        check_pairs(rows, train, held_out)
    line = str(error.value)
    assert line.startswith(f"reranker training pair 2 (train question {train[0].id}): its negative text "
                           "states test_facts fact healthcare.asthma.cause; ") and "\n" not in line


STAGE = ("reranker.epochs=1", "reranker.chunk_negatives=2", "reranker.topic_negatives=2",
         "reranker.hard_negatives=1", "reranker.random_negatives=1")


def test_stage_trains_on_passages_free_of_held_out_facts(cfg_factory, tmp_path, held_out_dir, subject_index,
                                                       tiny_cross_encoder_dir):
    main(stage_cfg(cfg_factory, tmp_path, tiny_cross_encoder_dir, f"paths.index={subject_index}", *STAGE))
    metrics = json.loads((tmp_path / "metrics" / "reranker.json").read_text())
    assert metrics["benchmark_split"] == "test_facts" and metrics["test_questions"] == 2 * len(HELD_OUT)
    assert 0 < metrics["chunk_pairs"] < 3 * len(taught(0))  # some questions lost their only clean passage


def test_stage_refuses_a_held_out_answer_in_the_train_split(cfg_factory, tmp_path, held_out_dir,
                                                            subject_index, tiny_cross_encoder_dir):
    """Another question with a held-out fact's answer (a bug upstream): refused before training, nothing
    written."""
    asked = next(r for r in load_split(held_out_dir, "test_facts")
                 if r["fact_id"] == "healthcare.migraine.treatment")
    leak = make_record("healthcare", "Which drugs help a migraine attack?", asked["output"], "synthetic",
                       fact_id="healthcare.migraine.relief")
    write_jsonl(held_out_dir / "train.jsonl", taught(0) + [leak])
    with pytest.raises(StageError) as error:
        main(stage_cfg(cfg_factory, tmp_path, tiny_cross_encoder_dir, f"paths.index={subject_index}", *STAGE))
    line = str(error.value)
    assert re.match(r"reranker training pair \d+ \(train question synthetic-healthcare-\w+\): its "
                    r"(positive|negative) text states test_facts fact healthcare\.migraine\.treatment; ",
                    line), line
    assert "\n" not in line
    assert not (tmp_path / "models").exists() and not (tmp_path / "metrics").exists()
