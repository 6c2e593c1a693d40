"""bench/align_gain.py on two runs laid out like metrics/ (dir: revisions): the paired verdicts and the checks
that refuse to compare runs that did not answer the same questions."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.align_gain import compare, per_question, splits


def write_run(root: Path, method: str, eval_scores: list[float], cited: list[bool], split: str = "validation") -> str:
    domain = root / "finance"
    (domain / "eval").mkdir(parents=True)
    (domain / "grounded").mkdir()
    (domain / "align.json").write_text(json.dumps({"method": method}))
    (domain / "grounded.json").write_text(json.dumps({"split": f"{split}_facts"}))
    rows = [{"model": "finetuned", "split": split, "id": f"q{i}", "scores": {"rougeL": s}}
            for i, s in enumerate(eval_scores)] + [{"model": "base", "split": split, "id": "q0", "scores": {}}]
    (domain / "eval" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    grounded = [{"id": f"f{i}", "cited": [1] if c else [], "answer_in_cited_chunk": c, "invalid_citations": [],
                 "retrieval_scores": {"rougeL": 0.5}, "closed_book_scores": {"rougeL": 0.2}} for i, c in enumerate(cited)]
    (domain / "grounded" / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in grounded))
    return f"dir:{root}"


def test_a_consistent_gain_improves_and_an_unchanged_metric_does_not(tmp_path):
    sft = write_run(tmp_path / "sft", "none", [0.3] * 30, [False] * 30)
    aligned = write_run(tmp_path / "dpo", "dpo", [0.3] * 30, [True] * 20 + [False] * 10)
    rows = compare(per_question(sft, "finance"), per_question(aligned, "finance"), seed=0)
    assert rows["grounded.answer_in_cited_chunk"]["verdict"] == "improves"
    assert rows["grounded.answer_in_cited_chunk"]["aligned"] == round(20 / 30, 4)
    assert rows["eval.rougeL"]["verdict"] == "no change" and rows["eval.rougeL"]["n"] == 30
    assert splits(aligned, "finance") == {"eval": "validation", "grounded": "validation_facts"}


def test_runs_on_different_questions_are_not_compared(tmp_path):
    sft = write_run(tmp_path / "sft", "none", [0.3] * 30, [False] * 30)
    fewer = write_run(tmp_path / "dpo", "dpo", [0.3] * 29, [False] * 30)
    with pytest.raises(SystemExit, match="answered different questions"):
        compare(per_question(sft, "finance"), per_question(fewer, "finance"), seed=0)
