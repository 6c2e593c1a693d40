"""The default config's synthetic splits are big enough to measure (conf/data/synthetic.yaml): at least 100 test
questions per domain with no repeats, 25-50 held-out facts per domain, and the training split num_samples asks
for (less legal's repeats: it has fewer distinct training questions than that).

    pytest tests/stages/prepare/test_synthetic_defaults.py -q
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from stages.config import compose, for_domain
from stages.prepare.cleaning import CleaningConfig, clean_records
from stages.prepare.sources import load_synthetic
from stages.prepare.splits import SplitRatios, remove_leakage, split_records
from stages.prepare.synthetic.generator import FACTS

DOMAINS = ("healthcare", "legal", "finance")


def default_cfg(domain: str, *overrides: str):
    return for_domain(compose(list(overrides)), domain)


@pytest.fixture(scope="module")
def generated() -> dict[str, list[dict]]:
    return {domain: load_synthetic(default_cfg(domain)).records for domain in DOMAINS}


@pytest.fixture(scope="module")
def prepared(generated) -> dict[str, tuple[dict[str, list[dict]], Counter]]:
    """The prepare stage's cleaning, split and leakage removal on the default records (no tokenizer: the lengths
    are in characters, which does not matter for these records)."""
    out = {}
    for domain, records in generated.items():
        cfg = default_cfg(domain)
        cleaned, dropped, _ = clean_records(records, CleaningConfig.from_cfg(cfg.prepare.cleaning),
                                            cfg.domain.get("system_prompt"), int(cfg.seed),
                                            Path("no-such-model/tokenizer.json"))
        splits, leaks = remove_leakage(split_records(cleaned, SplitRatios.from_cfg(cfg.prepare.split),
                                                     int(cfg.seed)), 0.9)
        out[domain] = splits, dropped + leaks
    return out


def paraphrase_test(records: list[dict]) -> list[dict]:
    return [r for r in records if r["held_out"] and not r.get("unseen_fact")]


# (train, validation, exact repeats dropped) from num_samples 342 at 8:1. Legal's 79 taught facts x 4 training
# phrasings give 316 distinct questions, so 26 of its 342 records repeat one and cleaning drops them.
EXPECTED_SIZES = {"healthcare": (304, 38, 0), "legal": (281, 35, 26), "finance": (304, 38, 0)}


@pytest.mark.parametrize("domain", DOMAINS)
def test_default_test_split_holds_100_questions_without_repeats_and_train_keeps_its_size(prepared, domain):
    splits, dropped = prepared[domain]
    train, validation, repeats = EXPECTED_SIZES[domain]
    # nothing the generator makes is cleaned away or counted as leakage, but repeats where a domain runs out
    assert dropped == (Counter({"duplicate_exact": repeats}) if repeats else Counter()), dropped
    test = splits["test"]
    assert len(test) >= 100
    assert len({r["instruction"] for r in test}) == len(test)
    static = [(r["fact_id"], r["template_id"]) for r in test if r["answer_type"] == "text"]
    assert len(set(static)) == len(static)
    # conf/data/synthetic.yaml: two epochs over this many rows is the training time budget
    assert (len(splits["train"]), len(splits["validation"])) == (train, validation)


@pytest.mark.parametrize("domain", DOMAINS)
def test_default_test_split_asks_mostly_distinct_facts_each_taught_by_a_training_record(generated, domain):
    records = generated[domain]
    test = [r for r in paraphrase_test(records) if r["answer_type"] == "text"]
    asked = Counter(r["fact_id"] for r in test)
    taught = {r["fact_id"] for r in records if not r["held_out"]}
    # train + validation records: splits.py decides which of them train gets
    assert set(asked) <= taught
    teachable = {f.fact_id for f in FACTS[domain]} - {r["fact_id"] for r in records if r.get("unseen_fact")}
    # every fact once before any fact twice: a domain with fewer taught facts than questions asks them all
    assert len(asked) == min(len(test), len(teachable)) and max(asked.values()) <= 2


@pytest.mark.parametrize("domain,least_test,least_validation", [
    ("healthcare", 50, 40), ("legal", 34, 28), ("finance", 30, 24)])
def test_default_held_out_fact_splits_are_large_enough_to_measure(prepared, domain, least_test, least_validation):
    splits, _ = prepared[domain]
    test_facts = {r["fact_id"] for r in splits["test_facts"]}
    validation_facts = {r["fact_id"] for r in splits["validation_facts"]}
    assert len(test_facts) >= least_test and len(validation_facts) >= least_validation
    assert not test_facts & validation_facts
    assert set(Counter(r["fact_id"] for r in splits["test_facts"]).values()) == {2}
    # training still has most facts to learn, and every kind of question
    trained = {r["fact_id"] for r in splits["train"] if r["answer_type"] == "text"}
    assert len(trained) >= 55
    assert {f.kind.kind_id for f in FACTS[domain] if f.fact_id in trained} == {f.kind.kind_id for f in FACTS[domain]}


def test_default_records_are_deterministic_and_follow_the_seed(generated):
    again = load_synthetic(default_cfg("legal")).records
    assert json.dumps(again) == json.dumps(generated["legal"])
    other = load_synthetic(default_cfg("legal", "seed=43")).records
    assert {r["instruction"] for r in paraphrase_test(other)} != {r["instruction"] for r in paraphrase_test(again)}


def test_null_test_questions_keeps_the_split_share_layout():
    records = load_synthetic(default_cfg("healthcare", "data.test_questions=null", "data.num_samples=190")).records
    assert len(paraphrase_test(records)) == 19  # prepare.split.test (0.1) of num_samples
    assert sum(not r.get("unseen_fact") for r in records) == 190
