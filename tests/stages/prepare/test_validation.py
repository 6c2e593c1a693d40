"""Each data check passes on good data and fails on data built to break it; a failing check stops main()."""

from __future__ import annotations

import pytest

from stages.errors import StageError
from stages.prepare.cleaning import CleaningConfig
from stages.prepare.main import main
from stages.prepare.records import make_record
from stages.prepare.validation import (
    ValidationSettings,
    check_distribution,
    check_duplicates,
    check_held_out_text,
    check_instruction_format,
    check_language,
    check_leakage,
    check_lengths,
    check_nulls,
    check_schema,
    check_unseen_facts,
    validate_splits,
)

from .conftest import sample_examples, write_rows

RATIOS = {"train": 0.8, "validation": 0.1, "test": 0.1}


def rec(instruction: str, output: str = "A clear answer written in plain English for the reader.",
        domain: str = "legal") -> dict:
    return make_record(domain, instruction, output, "t", system_prompt="SYS")


def good_splits() -> dict[str, list[dict]]:
    rows = [rec(e["instruction"], e["output"]) for e in sample_examples(40)]
    return {"train": rows[:32], "validation": rows[32:36], "test": rows[36:]}


def test_all_checks_pass_on_good_data():
    results = validate_splits(good_splits(), RATIOS, CleaningConfig(), len, "chars", ValidationSettings())
    assert [r.name for r in results] == ["schema", "nulls", "duplicates", "length", "language",
                                         "instruction_format", "distribution", "leakage", "unseen_facts",
                                         "held_out_text"]
    assert all(r.passed for r in results), [r for r in results if not r.passed]


def test_a_held_out_fact_stated_in_another_split_fails():
    splits = good_splits()
    splits["test_facts"] = [dict(splits["test"][0], fact_id="legal.tort.definition")]
    splits["test"] = splits["test"][1:]
    assert check_unseen_facts(splits).passed
    splits["train"][0]["fact_id"] = "legal.tort.definition"
    result = check_unseen_facts(splits)
    assert not result.passed and result.examples == [f"train:{splits['train'][0]['id']} states legal.tort.definition"]
    # a fact held out for validation_facts must not be asked by test_facts either
    splits["train"][0]["fact_id"] = "legal.other"
    splits["validation_facts"] = [dict(splits["test_facts"][0], id="v1")]
    result = check_unseen_facts(splits)
    assert not result.passed and len(result.examples) == 1 and "legal.tort.definition" in result.examples[0]


def test_a_held_out_answer_in_a_training_prompt_fails():
    """The text twin of the fact-id check: a grounded prompt with a window of a held-out answer fails."""
    splits = good_splits()
    held_out = dict(splits["test"][0], fact_id="legal.tort.definition")
    splits["test_facts"], splits["test"] = [held_out], splits["test"][1:]
    assert check_held_out_text(splits).passed  # every output is the same template sentence: taught wording
    window = " ".join(held_out["output"].split()[:9])  # "In short, <its topic> is a legal notion ..."
    train = splits["train"][0]
    question = train["messages"][1]["content"]
    train["messages"][1]["content"] = f"Context:\n[1] Torts: {window}\n\nQuestion: {question}"
    result = check_held_out_text(splits)
    assert not result.passed and result.examples == [
        f"train:{train['id']} messages[1] (user) states test_facts fact legal.tort.definition"]
    train["messages"][1]["content"] = "What is a tort?"
    validation = splits["validation"][0]  # the whole answer, in a validation record's input
    validation["messages"][1]["content"] = f"{validation['instruction']}\n\n{held_out['output']}"
    assert check_held_out_text(splits).examples == [
        f"validation:{validation['id']} messages[1] (user) states test_facts fact legal.tort.definition"]


def test_schema():
    splits = good_splits()
    del splits["train"][0]["messages"]
    splits["test"][0]["output"] = 42
    result = check_schema(splits)
    assert not result.passed and result.detail.startswith("2 records")
    assert "missing=['messages']" in result.examples[0] and "wrong_type=['output']" in result.examples[1]
    assert validate_splits(splits, RATIOS, CleaningConfig(), len, "chars", ValidationSettings()) == [result]


def test_nulls_and_empties():
    splits = good_splits()
    splits["validation"][0]["output"] = "   "
    splits["test"][0]["input"] = None
    result = check_nulls(splits)
    assert not result.passed and result.detail.startswith("2 records")


def test_duplicates_within_a_split():
    splits = good_splits()
    splits["train"].append(rec(splits["train"][0]["instruction"].upper() + "!!", "Different answer."))
    result = check_duplicates(splits)
    assert not result.passed and "train:" in result.examples[0]
    assert check_duplicates(good_splits()).passed


def test_lengths():
    splits = good_splits()
    splits["test"].append(rec("What is a lien?", "x" * 2000))
    result = check_lengths(splits, CleaningConfig(max_length=1024), len, "chars")
    assert not result.passed and result.examples == [f"test:{splits['test'][-1]['id']}"]
    assert check_lengths(splits, CleaningConfig(max_length=5000), len, "chars").passed


def test_language_with_tolerance_and_skip():
    splits = good_splits()
    german = ["Was ist eine Hypothek und wie funktioniert sie im deutschen Recht genau?",
              "Die Hypothek ist ein Grundpfandrecht, das eine Forderung des Gläubigers an einem Grundstück sichert."]
    splits["train"][:3] = [rec(german[0] + f" Frage {i}", german[1]) for i in range(3)]  # 3/40 = 7.5%
    result = check_language(splits, ValidationSettings(language="en", max_language_mismatch=0.05))
    assert not result.passed and result.examples[0].endswith("(de)") and result.detail.startswith("3/40")
    assert check_language(splits, ValidationSettings(language="en", max_language_mismatch=0.1)).passed
    assert check_language(splits, ValidationSettings(language=None)).detail.startswith("skipped")
    # a bare number cannot be detected: counted as undetectable, not as another language
    undetectable = {"train": [rec("12345", "678")], "validation": [], "test": []}
    result = check_language(undetectable, ValidationSettings())
    assert result.passed and "1 undetectable" in result.detail


def test_instruction_format():
    splits = good_splits()
    splits["train"].append(rec("What is a tort?", "what is a tort"))
    splits["train"].append(rec("12345 ???"))
    broken = rec("What is an easement?")
    broken["messages"] = broken["messages"][::-1]
    splits["test"].append(broken)
    result = check_instruction_format(splits)
    assert not result.passed and result.detail.startswith("3 ")
    joined = " | ".join(result.examples)
    assert "output repeats the instruction" in joined and "no letters" in joined and "messages are not" in joined


def test_distribution():
    splits = good_splits()
    assert check_distribution(splits, RATIOS, ValidationSettings(expected_domains=("legal",))).passed
    empty_val = dict(splits, validation=[])
    assert "validation is empty" in check_distribution(empty_val, RATIOS, ValidationSettings()).examples
    missing = check_distribution(splits, RATIOS, ValidationSettings(expected_domains=("legal", "finance")))
    assert not missing.passed and "'finance' has no training examples" in missing.examples[0]
    mixed = {"train": [rec(f"Tax question {i} about deductions", domain="tax") for i in range(25)]
             + [rec(f"Legal question {i} about contracts") for i in range(25)],
             "validation": [rec(f"Other legal question {i} about torts") for i in range(20)],
             "test": [rec(f"Tax question {i} about income", domain="tax") for i in range(10)]
             + [rec(f"Legal question {i} about wills") for i in range(10)]}
    skewed = check_distribution(mixed, RATIOS, ValidationSettings(max_domain_share_gap=0.15))
    assert not skewed.passed and skewed.examples == ["validation share of tax differs from train by 50%",
                                                      "validation share of legal differs from train by 50%"]


def test_leakage_check():
    splits = good_splits()
    assert check_leakage(splits, ValidationSettings()).passed
    splits["test"].append(rec(splits["train"][5]["instruction"].lower(), "Some other answer."))
    result = check_leakage(splits, ValidationSettings())
    assert not result.passed and result.examples[0].endswith(f"~ train:{splits['train'][5]['id']} (1.00)")


def test_failing_check_stops_main_and_writes_nothing(tmp_path, prep_cfg):
    path = write_rows(tmp_path / "en.jsonl", sample_examples(30))
    with pytest.raises(StageError, match=r"data validation failed, nothing written: language: 30/30 .* not 'de'"):
        main(prep_cfg("domain=legal", "data=local_file", f"data.path={path}", "prepare.validation.language=de"))
    assert not (tmp_path / "data").exists() and not (tmp_path / "metrics").exists()
