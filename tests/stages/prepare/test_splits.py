"""Split ratios, determinism, stratification by domain, synthetic held-out test split, and leakage removal."""

from __future__ import annotations

import json
from collections import Counter

import pytest

from stages.errors import StageError
from stages.prepare.cleaning import prompt_text
from stages.prepare.dedup import jaccard, normalize_for_matching, shingles
from stages.prepare.main import main
from stages.prepare.records import make_record
from stages.prepare.splits import SplitRatios, find_leaks, remove_leakage, split_records

from .conftest import read_split, sample_examples, write_rows


def records(n: int, domain: str = "legal", **extra) -> list[dict]:
    return [make_record(domain, f"{domain} question number {i} about the topic {i * 7}?", f"Answer {i}.", "t",
                        **extra) for i in range(n)]


def ids(split: dict) -> dict[str, list[str]]:
    return {name: [r["id"] for r in rs] for name, rs in split.items()}


@pytest.mark.parametrize(("ratios", "expected"), [((0.8, 0.1, 0.1), (80, 10, 10)), ((0.7, 0.15, 0.15), (70, 15, 15)),
                                                  ((0.9, 0.1, 0.0), (90, 10, 0))])
def test_ratios(ratios, expected):
    split = split_records(records(100), SplitRatios(*ratios), seed=1)
    assert tuple(len(split[s]) for s in ("train", "validation", "test")) == expected
    assert len({r["id"] for rs in split.values() for r in rs}) == 100  # a partition: nothing lost or repeated


def test_bad_ratios_are_an_error():
    with pytest.raises(StageError, match="sum to 1"):
        SplitRatios.from_cfg({"train": 0.8, "validation": 0.3, "test": 0.1})
    with pytest.raises(StageError, match="must be >= 0"):
        SplitRatios.from_cfg({"train": 1.2, "validation": -0.1, "test": -0.1})


def test_deterministic_from_seed_and_independent_of_input_order():
    data = records(50)
    first = split_records(data, SplitRatios(), seed=7)
    assert ids(split_records(list(reversed(data)), SplitRatios(), seed=7)) == ids(first)
    assert ids(split_records(data, SplitRatios(), seed=8)) != ids(first)


def test_stratified_by_domain():
    data = records(60, "legal") + records(30, "tax") + records(10, "health")
    split = split_records(data, SplitRatios(), seed=0)
    counts = {name: Counter(r["domain"] for r in rs) for name, rs in split.items()}
    assert counts["train"] == {"legal": 48, "tax": 24, "health": 8}
    assert counts["validation"] == {"legal": 6, "tax": 3, "health": 1}
    assert counts["test"] == {"legal": 6, "tax": 3, "health": 1}
    tiny = split_records(records(3, "rare") + records(40), SplitRatios(), seed=0)
    # a small domain reaches every split (test_facts only holds synthetic records asking unseen facts)
    assert all(any(r["domain"] == "rare" for r in tiny[name]) for name in ("train", "validation", "test"))
    assert tiny["test_facts"] == [] and tiny["validation_facts"] == []


def test_held_out_records_are_the_test_split():
    data = records(90, held_out=False) + [dict(r, held_out=True) for r in records(10, "legal2")]
    split = split_records(data, SplitRatios(0.8, 0.1, 0.1), seed=0)
    assert {r["domain"] for r in split["test"]} == {"legal2"} and len(split["test"]) == 10
    assert len(split["validation"]) == 10 and len(split["train"]) == 80  # 90 cut 8:1


def test_unseen_fact_records_are_the_test_facts_split():
    unseen = [dict(r, held_out=True, unseen_fact=True) for r in records(6, "legal3")]
    data = records(90, held_out=False) + [dict(r, held_out=True) for r in records(10, "legal2")] + unseen
    split = split_records(data, SplitRatios(0.8, 0.1, 0.1), seed=0)
    assert sorted(r["id"] for r in split["test_facts"]) == sorted(r["id"] for r in unseen)
    assert {r["domain"] for r in split["test"]} == {"legal2"} and len(split["train"]) == 80
    tuning = [dict(r, held_out=True, unseen_fact=True, validation_fact=True) for r in records(4, "legal4")]
    split = split_records(data + tuning, SplitRatios(0.8, 0.1, 0.1), seed=0)
    assert sorted(r["id"] for r in split["validation_facts"]) == sorted(r["id"] for r in tuning)
    assert sorted(r["id"] for r in split["test_facts"]) == sorted(r["id"] for r in unseen)


def test_leakage_is_found_removed_and_counted():
    train = records(20)
    leak_exact = make_record("legal", "LEGAL question number 3 about the topic 21", "Other answer.", "t")
    long_q = ("Explain how a court decides whether a contract term is unconscionable and what remedies a party "
              "can ask for when the judge strikes the term out")
    train.append(make_record("legal", long_q, "Answer.", "t"))
    leak_near = make_record("legal", long_q + " today", "Answer.", "t")
    clean = make_record("legal", "What is adverse possession?", "Answer.", "t")
    splits = {"train": train, "validation": [leak_exact, clean], "test": [leak_near]}
    leaks = find_leaks(splits, threshold=0.9)
    assert [hit[0] for hit in leaks["validation"]] == [leak_exact["id"]] and leaks["validation"][0][2] == 1.0
    assert [hit[0] for hit in leaks["test"]] == [leak_near["id"]] and 0.9 <= leaks["test"][0][2] < 1.0
    cleaned, dropped = remove_leakage(splits, threshold=0.9)
    assert cleaned["validation"] == [clean] and cleaned["test"] == [] and cleaned["train"] == train
    assert dropped == {"leakage_validation": 1, "leakage_test": 1}
    assert find_leaks(cleaned, 0.9) == {"validation": [], "test": [], "test_facts": [], "validation_facts": []}


def test_main_removes_leakage_and_counts_it(tmp_path, prep_cfg):
    # pairs of similar prompts (Jaccard ~0.6-0.8) survive near-dedup at 0.95 but count as leakage at 0.5
    rows = []
    for e in sample_examples(40):
        rows.append(e)
        rows.append(dict(e, instruction=e["instruction"] + " Please be brief and precise"))
    path = write_rows(tmp_path / "pairs.jsonl", rows)
    main(prep_cfg("domain=legal", "data=local_file", f"data.path={path}", "prepare.cleaning.near_dup_threshold=0.95",
                  "prepare.validation.leakage_threshold=0.5"))
    data = json.loads((tmp_path / "metrics" / "data.json").read_text())
    leaked = data["dropped"].get("leakage_validation", 0) + data["dropped"].get("leakage_test", 0)
    assert leaked > 0 and data["checks"]["leakage"]
    assert data["counts"]["total"] == 80 - leaked
    train = [shingles(normalize_for_matching(prompt_text(r))) for r in read_split(tmp_path, "legal", "train")]
    for split in ("validation", "test"):
        for r in read_split(tmp_path, "legal", split):
            assert max(jaccard(shingles(normalize_for_matching(prompt_text(r))), t) for t in train) < 0.5


@pytest.mark.parametrize("domain", ["healthcare", "legal", "finance"])
def test_every_fact_the_test_split_asks_is_taught_in_train(domain):
    """The generator teaches each asked fact once; the random train/validation cut must not move that one record
    into validation (it did for 3-5 test questions per domain before splits.py swapped it back)."""
    from stages.config import compose
    from stages.prepare.synthetic import generate_synthetic

    data = compose([]).data
    generated = generate_synthetic([domain], int(data.num_samples), seed=42,
                                   held_out_templates=int(data.held_out_templates),
                                   test_questions=int(data.test_questions), held_out_facts=float(data.held_out_facts),
                                   validation_held_out_facts=float(data.validation_held_out_facts))
    split = split_records(generated, SplitRatios(0.8, 0.1, 0.1), seed=42)
    taught = {r["fact_id"] for r in split["train"]}
    asked = {r["fact_id"] for r in split["test"]}
    assert len(split["test"]) >= 100 and asked <= taught, sorted(asked - taught)
