"""The preference builder labels planted right and wrong answers, makes the chosen answer right, and local
preference / feedback files give one-line errors naming the file, line and field."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stages.align.preferences import (
    REASONS,
    build_pairs,
    gold_passages,
    judge,
    load_feedback,
    load_preference_file,
    reference_answer,
)
from stages.errors import StageError
from stages.inference.grounding import GROUNDING

SYSTEM = "You are a finance assistant."


def numeric_record() -> dict:
    q = "How much is $1000 after 2 years at 10% compounded yearly?"
    a = "With FV = P x (1 + r)^n, $1000 grows to $1210.00."
    return {"instruction": q, "output": a, "numeric_answer": 1210.0, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


def grounded_record() -> dict:
    q = "What is a balance sheet?"
    a = "A balance sheet lists a company's assets, liabilities and equity at one point in time."
    context = ("Context:\n[1] Income statement: Revenue minus expenses over a period.\n\n"
               f"[2] Balance sheet: {a}\n\n[3] Cash flow: Cash in and out.")
    return {"instruction": q, "output": a, "numeric_answer": None, "grounded": True, "messages": [
        {"role": "system", "content": f"{SYSTEM}\n\n{GROUNDING}"},
        {"role": "user", "content": f"{context}\n\nQuestion: {q}"}, {"role": "assistant", "content": a}]}


def text_record() -> dict:
    q = "What does liquidity mean?"
    a = "Liquidity is how quickly an asset can be turned into cash without losing value."
    return {"instruction": q, "output": a, "numeric_answer": None, "messages": [
        {"role": "system", "content": SYSTEM}, {"role": "user", "content": q}, {"role": "assistant", "content": a}]}


@pytest.mark.parametrize(("record", "answer", "stopped", "expected"), [
    (numeric_record(), "With FV = P x (1 + r)^n, $1000 grows to $1210.00.", True, None),
    (numeric_record(), "It grows to $1,210.", True, "wrong_fact"),  # the number is right, the words are not
    (numeric_record(), "With FV = P x (1 + r)^n, $1000 grows to $1200.00.", True, "wrong_number"),
    (numeric_record(), "With FV = P x (1 + r)^n, $1000 grows to $1210.00.", False, "no_stop"),
    (grounded_record(), "A balance sheet lists a company's assets, liabilities and equity at one point in time [2].",
     True, None),
    (grounded_record(), "A balance sheet lists a company's assets, liabilities and equity at one point in time.",
     True, "no_citation"),
    (grounded_record(), "A balance sheet lists a company's assets, liabilities and equity at one point in time [1].",
     True, "wrong_citation"),
    (grounded_record(), "Revenue minus expenses [2].", True, "wrong_fact"),
    (text_record(), "Liquidity is how quickly an asset can be turned into cash without losing value.", True, None),
    (text_record(), "Liquidity is the interest rate a bank charges.", True, "wrong_fact"),
])
def test_judge_labels_planted_answers(record, answer, stopped, expected):
    assert judge(answer, stopped, record) == expected


def test_reference_answer_cites_the_passage_that_holds_it():
    record = grounded_record()
    assert gold_passages(record) == [2]
    cited = reference_answer(record)
    assert cited.endswith("time [2].") and judge(cited, True, record) is None
    assert reference_answer(text_record()) == text_record()["output"]


def test_build_pairs_pairs_each_distinct_wrong_sample_with_a_right_answer():
    records = [numeric_record(), grounded_record(), text_record()]
    right_grounded = "A balance sheet lists a company's assets, liabilities and equity at one point in time [2]."
    samples = [
        [("It grows to $1200.", True), ("It grows to $1200.", True)],            # one distinct wrong answer
        [(right_grounded, True), ("A balance sheet lists a company's assets, liabilities and equity at one "
                                  "point in time.", True)],
        [(text_record()["output"], True), (text_record()["output"], True)],    # all right: no pair
    ]
    pairs, report = build_pairs(records, samples)
    assert [p["reason"] for p in pairs] == ["wrong_number", "no_citation"]
    assert pairs[0]["chosen"] == numeric_record()["output"] and pairs[0]["chosen_from"] == "reference"
    assert pairs[1]["chosen"] == right_grounded and pairs[1]["chosen_from"] == "sample"
    assert all(judge(p["chosen"], True, p["record"]) is None for p in pairs)
    assert report["samples"] == 6 and report["right"] == 3 and report["pairs"] == 2
    assert report["wrong_by_reason"] == {r: {"wrong_number": 1, "no_citation": 1}.get(r, 0) for r in REASONS}


def write(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines), encoding="utf-8")
    return path


def test_local_files_paired_and_unpaired(tmp_path):
    paired = load_preference_file(write(tmp_path / "p.jsonl", [
        {"prompt": "What is APR?", "chosen": "The yearly cost of a loan.", "rejected": "A bank."},
        {"prompt": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "What is a bond?"}],
         "chosen": "A loan to an issuer.", "rejected": "A share."}]))
    assert paired[0]["messages"] == [{"role": "user", "content": "What is APR?"}]
    assert paired[1]["messages"][0]["role"] == "system" and paired[1]["rejected"] == "A share."
    unpaired = load_preference_file(write(tmp_path / "u.jsonl", [
        {"prompt": "What is APR?", "completion": "A bank.", "label": False}]))
    assert unpaired == [{"messages": [{"role": "user", "content": "What is APR?"}], "completion": "A bank.",
                         "label": False}]


@pytest.mark.parametrize(("lines", "message"), [
    (["{not json"], "p.jsonl:1: malformed JSON"),
    ([{"prompt": "q", "chosen": "a"}], "p.jsonl:1: field 'rejected' missing"),
    ([{"prompt": "q", "chosen": "a", "rejected": "b"}, {"prompt": "q", "completion": "a", "label": True}],
     "p.jsonl:2: mixes formats"),
    ([{"prompt": "q", "completion": "a", "label": "yes"}], "p.jsonl:1: field 'label' must be true"),
    ([{"prompt": "", "chosen": "a", "rejected": "b"}], "p.jsonl:1: field 'prompt' must be"),
    ([{"prompt": "q", "chosen": "same", "rejected": "same "}], "p.jsonl:1: fields 'chosen' and 'rejected' are the same"),
    ([[1, 2]], "p.jsonl:1: expected a JSON object"),
    ([""], "p.jsonl: no rows"),
])
def test_bad_preference_files_are_one_line_errors(tmp_path, lines, message):
    with pytest.raises(StageError) as err:
        load_preference_file(write(tmp_path / "p.jsonl", lines))
    assert message in str(err.value) and "\n" not in str(err.value)


def test_feedback_lines_become_unpaired_rows(tmp_path):
    path = write(tmp_path / "legal.jsonl", [
        {"question": "What is a tort?", "answer": "A civil wrong.", "label": True, "domain": "legal",
         "system": None, "adapter_sha256": "ab" * 32, "model": "m", "created": "2026-12-05T20:00:00Z"},
        {"question": "What is bail?", "answer": "A fine.", "label": False, "domain": "legal",
         "system": "Be brief.", "adapter_sha256": None, "model": "m", "created": "2026-12-05T20:00:01Z"}])
    rows = load_feedback(path, "You are a legal assistant.")
    assert rows[0] == {"messages": [{"role": "system", "content": "You are a legal assistant."},
                                    {"role": "user", "content": "What is a tort?"}],
                       "completion": "A civil wrong.", "label": True}
    assert rows[1]["messages"][0]["content"] == "Be brief." and rows[1]["label"] is False
    write(path, [{"question": "q", "answer": "a", "label": "bad"}])
    with pytest.raises(StageError, match=r"legal.jsonl:1: field 'label'"):
        load_feedback(path, None)
    path.write_text('{"question": "q", "answer": "a", "label": true}\n["not", "a", "row"]\n')
    with pytest.raises(StageError, match=r"legal.jsonl:2: expected a JSON object"):
        load_feedback(path, None)
    path.write_bytes(b'{"question": "\xff"}\n')
    with pytest.raises(StageError, match=r"legal.jsonl: not valid UTF-8"):
        load_feedback(path, None)


def test_one_passage_variant_asks_with_the_answer_passage_alone_as_1():
    from stages.align.preferences import one_passage_variant

    record = grounded_record()
    record["messages"][-1]["content"] = reference_answer(record)  # cites [2], as prepare writes it
    variant = one_passage_variant(record)
    system, user, answer = variant["messages"]
    assert system["content"].count(GROUNDING) == 1 and system["content"].startswith(SYSTEM)
    assert user["content"] == ("Context:\n[1] Balance sheet: " + record["output"] + "\n\nQuestion: "
                               + record["instruction"])
    assert answer["content"].endswith("time [1].") and judge(answer["content"], True, variant) is None
    assert judge(record["messages"][-1]["content"], True, variant) == "no_citation"  # [2] does not exist there
    assert one_passage_variant(text_record()) is None and one_passage_variant(numeric_record()) is None
