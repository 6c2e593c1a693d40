"""Tests of the synthetic domain data generator (fact tables, held-out templates, computed finance answers).

    pytest tests/stages/prepare/test_synthetic.py -q
"""

from __future__ import annotations

import itertools
import json
import math
import random
import re
from collections import Counter, defaultdict
from decimal import Decimal

import pytest

from stages.errors import StageError
from stages.prepare.synthetic import DISCLAIMER, SUPPORTED_DOMAINS, generate_synthetic
from stages.prepare.synthetic import finance_math as fm
from stages.prepare.synthetic.finance_calc import CALCULATIONS
from stages.prepare.synthetic.generator import FACTS, KINDS

ALL = list(SUPPORTED_DOMAINS)
NUMBER = re.compile(r"-?\d+(?:\.\d+)?")


def by_kind(records: list[dict]) -> dict[str, list[dict]]:
    groups = defaultdict(list)
    for r in records:
        groups[r["template_id"].rsplit(".", 1)[0]].append(r)
    return groups


# ---------------------------------------------------------------- determinism, counts, balance

def test_same_seed_gives_byte_identical_records_and_other_seed_differs():
    a = generate_synthetic(ALL, 300, seed=7, system_prompt="Be brief.")
    b = generate_synthetic(ALL, 300, seed=7, system_prompt="Be brief.")
    c = generate_synthetic(ALL, 300, seed=8, system_prompt="Be brief.")
    assert json.dumps(a) == json.dumps(b)
    assert [r["id"] for r in a] != [r["id"] for r in c]
    # a different selection, not only a different order
    assert {r["instruction"] for r in a} != {r["instruction"] for r in c}


@pytest.mark.parametrize("domains,num_samples", [
    (["healthcare"], 1), (["finance", "legal"], 7), (ALL, 100), (ALL, 601), (["legal", "healthcare"], 333),
])
def test_exact_count_even_domain_split_and_held_out_count(domains, num_samples):
    records = generate_synthetic(domains, num_samples, seed=3, test_fraction=0.1)
    assert len(records) == num_samples
    per_domain = Counter(r["domain"] for r in records)
    base, extra = divmod(num_samples, len(domains))
    # remainder goes to the first domains, in the order given
    assert [per_domain[d] for d in domains] == [base + (i < extra) for i in range(len(domains))]
    held = [r for r in records if r["held_out"]]
    assert len(held) == round(num_samples * 0.1)
    held_per_domain = Counter(r["domain"] for r in held)
    assert max(held_per_domain.values(), default=0) - min(held_per_domain.get(d, 0) for d in domains) <= 1
    assert all(r["source"] == "synthetic" and r["input"] == "" for r in records)


def test_no_exact_duplicates_while_the_fact_tables_are_large_enough():
    records = generate_synthetic(ALL, 1800, seed=11)
    pairs = [(r["instruction"], r["output"]) for r in records]
    assert len(set(pairs)) == len(pairs)
    # finance also draws computed questions, so it never runs out of fresh ones
    finance = generate_synthetic(["finance"], 3000, seed=11)
    assert len({(r["instruction"], r["output"]) for r in finance}) == 3000


# ---------------------------------------------------------------- held-out templates

@pytest.mark.parametrize("held_out_templates", [1, 2])
def test_held_out_templates_are_used_only_by_held_out_records(held_out_templates):
    records = generate_synthetic(ALL, 900, seed=5, held_out_templates=held_out_templates, test_fraction=0.2)
    kinds = {kind.kind_id: kind for domain in ALL for kind in KINDS[domain]}
    train = [r for r in records if not r["held_out"]]
    held = [r for r in records if r["held_out"]]
    assert len(held) == 180
    for r in records:
        kind_id, index = r["template_id"].rsplit(".", 1)
        is_held_template = int(index) >= len(kinds[kind_id].templates) - held_out_templates
        assert is_held_template == r["held_out"], r["template_id"]
    assert not {r["template_id"] for r in held} & {r["template_id"] for r in train}
    assert not {r["instruction"] for r in held} & {r["instruction"] for r in train}


def test_held_out_facts_are_taught_in_training_under_other_phrasings():
    records = generate_synthetic(["healthcare", "legal"], 400, seed=2, test_fraction=0.25)
    trained = {r["fact_id"] for r in records if not r["held_out"]}
    asked = {r["fact_id"] for r in records if r["held_out"]}
    assert asked and asked <= trained


# ---------------------------------------------------------------- test_questions (the test split's size)

def test_test_questions_come_on_top_of_num_samples_for_every_domain():
    records = generate_synthetic(ALL, 300, seed=3, held_out_templates=2, test_questions=40)
    held = Counter(r["domain"] for r in records if r["held_out"])
    assert held == {domain: 40 for domain in ALL}
    assert Counter(r["domain"] for r in records if not r["held_out"]) == {domain: 100 for domain in ALL}
    # 0 asks for no test split at all
    assert not any(r["held_out"] for r in generate_synthetic(["legal"], 50, seed=3, test_questions=0))


def test_test_questions_ask_every_fact_once_before_any_twice_and_no_pair_twice():
    # legal keeps 79 taught facts with these shares: 100 questions ask each once, then 21 a second time
    records = generate_synthetic(["legal"], 171, seed=6, held_out_templates=2, test_questions=100,
                                 held_out_facts=0.25, validation_held_out_facts=0.2)
    test = [r for r in records if r["held_out"] and not r.get("unseen_fact")]
    unseen = {r["fact_id"] for r in records if r.get("unseen_fact")}
    teachable = {f.fact_id for f in FACTS["legal"]} - unseen
    per_fact = Counter(r["fact_id"] for r in test)
    assert len(test) == 100 and set(per_fact) == teachable and sorted(Counter(per_fact.values()).items()) == [
        (1, len(teachable) - (100 - len(teachable))), (2, 100 - len(teachable))]
    assert len({(r["fact_id"], r["template_id"]) for r in test}) == 100
    # when the domain has more facts than questions, every question asks a different fact
    healthcare = generate_synthetic(["healthcare"], 171, seed=6, held_out_templates=2, test_questions=100)
    assert len({r["fact_id"] for r in healthcare if r["held_out"]}) == 100


def test_test_questions_only_ask_facts_the_training_records_teach():
    for domain in ALL:
        records = generate_synthetic([domain], 60, seed=1, held_out_templates=2, test_questions=100,
                                     held_out_facts=0.25, validation_held_out_facts=0.2)
        asked = {r["fact_id"] for r in records if r["held_out"] and not r.get("unseen_fact")}
        taught = {r["fact_id"] for r in records if not r["held_out"]}
        assert asked <= taught and sum(not r["held_out"] for r in records) == 60, domain


@pytest.mark.parametrize("kwargs,pattern", [
    # 79 taught legal facts x 1 held-out template cannot give 100 distinct questions
    ({"held_out_templates": 1}, r"data.test_questions=100 is more than the 79 distinct held-out questions legal"),
    ({"test_questions": 200}, r"data.test_questions=200 is more than the 158 distinct"),
    # 100 questions over 2 held-out templates ask >= 50 facts; 40 training records cannot teach them all
    ({"num_samples": 40}, r"asks about at least 50 legal facts but only 40 training records"),
])
def test_test_questions_beyond_what_the_tables_can_ask_raise_one_line_errors(kwargs, pattern):
    args = {"domains": ["legal"], "num_samples": 171, "seed": 0, "held_out_templates": 2, "test_questions": 100,
            "held_out_facts": 0.25, "validation_held_out_facts": 0.2} | kwargs
    with pytest.raises(StageError, match=pattern) as error:
        generate_synthetic(**args)
    assert "\n" not in str(error.value)


def test_finance_test_questions_never_run_out():
    # computed questions take over where the static facts end, so finance has no test_questions limit
    records = generate_synthetic(["finance"], 171, seed=0, held_out_templates=1, test_questions=400)
    test = [r for r in records if r["held_out"]]
    assert len(test) == 400 and len({r["instruction"] for r in test}) == 400
    assert sum(r["answer_type"] == "numeric" for r in test) >= 200


def test_held_out_facts_are_never_stated_by_another_record():
    records = generate_synthetic(["healthcare", "legal", "finance"], 900, seed=2, held_out_facts=0.15,
                                 questions_per_fact=2)
    unseen = [r for r in records if r.get("unseen_fact")]
    others = [r for r in records if not r.get("unseen_fact")]
    assert len(others) == 900 and all(r["held_out"] for r in unseen)
    unseen_facts = {r["fact_id"] for r in unseen}
    assert not unseen_facts & {r["fact_id"] for r in others}
    assert not {r["output"] for r in unseen} & {r["output"] for r in others}  # the answer text is new too
    for domain in ("healthcare", "legal", "finance"):
        facts = FACTS[domain]
        asked = {r["fact_id"] for r in unseen if r["domain"] == domain}
        # ~15% of each kind, each fact asked twice in different phrasings
        kinds = {f.kind.kind_id for f in facts}
        assert {f.kind.kind_id for f in facts if f.fact_id in asked} == kinds
        assert abs(len(asked) - 0.15 * len(facts)) <= len(kinds)
    per_fact = Counter(r["fact_id"] for r in unseen)
    assert set(per_fact.values()) == {2}
    assert all(len({r["template_id"] for r in unseen if r["fact_id"] == f}) == 2 for f in per_fact)
    # off (the default) draws exactly what was drawn before the option existed
    assert generate_synthetic(["legal"], 100, seed=2) == generate_synthetic(["legal"], 100, seed=2, held_out_facts=0)


def test_validation_facts_are_a_second_disjoint_held_out_share():
    both = generate_synthetic(["healthcare", "legal"], 600, seed=2, held_out_facts=0.15,
                              validation_held_out_facts=0.15)
    tuning = [r for r in both if r.get("validation_fact")]
    test = [r for r in both if r.get("unseen_fact") and not r.get("validation_fact")]
    taught = {r["fact_id"] for r in both if not r.get("unseen_fact")}
    assert tuning and all(r["unseen_fact"] and r["held_out"] for r in tuning)
    assert not {r["fact_id"] for r in tuning} & ({r["fact_id"] for r in test} | taught)
    for domain in ("healthcare", "legal"):
        asked = {r["fact_id"] for r in tuning if r["domain"] == domain}
        kinds = {f.kind.kind_id for f in FACTS[domain]}
        assert abs(len(asked) - 0.15 * len(FACTS[domain])) <= len(kinds)
        # every kind keeps at least one fact that training teaches
        assert {f.kind.kind_id for f in FACTS[domain] if f.fact_id in taught} == kinds
    # test_facts is the same draw with or without the validation share
    alone = generate_synthetic(["healthcare", "legal"], 600, seed=2, held_out_facts=0.15)
    assert sorted(r["instruction"] for r in test) == sorted(r["instruction"] for r in alone if r.get("unseen_fact"))
    with pytest.raises(StageError, match="data.validation_held_out_facts must be a share between 0 and 0.35"):
        generate_synthetic(["legal"], 100, seed=2, held_out_facts=0.15, validation_held_out_facts=0.4)


def test_held_out_computed_questions_use_fresh_numbers():
    records = generate_synthetic(["finance"], 1000, seed=9, test_fraction=0.3)
    train_numbers = defaultdict(set)
    for r in records:
        if r["answer_type"] == "numeric" and not r["held_out"]:
            train_numbers[r["fact_id"]].add(tuple(sorted(NUMBER.findall(r["instruction"]))))
    held = [r for r in records if r["answer_type"] == "numeric" and r["held_out"]]
    assert len(held) > 50
    for r in held:
        assert tuple(sorted(NUMBER.findall(r["instruction"]))) not in train_numbers[r["fact_id"]], r["instruction"]


def test_test_fraction_zero_gives_no_held_out_records():
    records = generate_synthetic(ALL, 60, seed=1, test_fraction=0.0)
    assert not any(r["held_out"] for r in records)


# ---------------------------------------------------------------- finance numbers

def test_finance_formulas_against_hand_computed_values():
    d = Decimal
    assert fm.to_cents(fm.compound_amount(d(1000), d(5), 10, 1)) == d("1628.89")
    assert fm.to_cents(fm.compound_amount(d(10000), d(5), 10, 12)) == d("16470.09")
    assert fm.to_cents(fm.simple_interest(d(2000), d(3), 4)) == d("240.00")
    assert fm.to_cents(fm.monthly_payment(d(200000), d(6), 360)) == d("1199.10")
    assert fm.to_cents(fm.monthly_payment(d(10000), d(0), 20)) == d("500.00")
    assert fm.to_cents(fm.savings_future_value(d(100), d(6), 120)) == d("16387.93")
    assert fm.to_hundredths(fm.percent_change(d(80), d(60))) == d("-25.00")
    assert fm.to_hundredths(fm.percent_change(d(50), d(65))) == d("30.00")
    assert fm.to_hundredths(fm.return_on_investment(d(1000), d(1250))) == d("25.00")
    assert fm.to_hundredths(fm.rule_of_72_years(d(8))) == d("9.00")
    assert fm.break_even_units(d(10000), d(25), d(15)) == 1000
    assert fm.break_even_units(d(1000), d(7), d(4)) == 334


def test_rounding_is_half_up_on_exact_decimals():
    # float rounding would give 2.67 (2.675 is stored as 2.67499...); cents must round half up
    assert fm.to_cents(Decimal("2.675")) == Decimal("2.68")
    assert fm.to_cents(Decimal("-0.125")) == Decimal("-0.13")


def _independent_value(name: str, p: dict) -> float:
    """Textbook formulas in plain floats, written separately from finance_math."""
    f = {k: float(v) for k, v in p.items()}
    if name == "compound_annual":
        return f["principal"] * (1 + f["rate"] / 100) ** f["years"]
    if name == "compound_monthly":
        return f["principal"] * (1 + f["rate"] / 1200) ** (12 * f["years"])
    if name == "simple_interest":
        return f["principal"] * f["rate"] / 100 * f["years"]
    if name == "loan_payment":
        i = f["rate"] / 1200
        return f["principal"] * i * (1 + i) ** f["months"] / ((1 + i) ** f["months"] - 1)
    if name == "savings_future_value":
        i = f["rate"] / 1200
        return f["deposit"] * ((1 + i) ** f["months"] - 1) / i
    if name == "percent_change":
        return 100 * (f["new"] / f["old"] - 1)
    if name == "return_on_investment":
        return 100 * (f["value"] - f["cost"]) / f["cost"]
    if name == "rule_of_72":
        return 72 / f["rate"]
    if name == "break_even":
        return math.ceil(f["fixed"] / (f["price"] - f["variable"]) - 1e-9)
    raise AssertionError(f"no independent formula for {name}")


@pytest.mark.parametrize("name", sorted(CALCULATIONS))
def test_each_computed_question_matches_an_independent_calculation(name):
    calc = CALCULATIONS[name]
    rng = random.Random(f"check-{name}")
    for _ in range(200):
        q = calc.draw(rng)
        expected = _independent_value(name, q.params)
        assert q.numeric_answer == pytest.approx(expected, abs=0.0051), (q.params, q.answer)
        # the answer states the result last, as evaluation will extract it
        assert float(NUMBER.findall(q.answer)[-1]) == q.numeric_answer
        for t in range(len(calc.kind.templates)):
            question = q.question(calc.kind, t)
            assert "{" not in question and question.endswith(("?", "."))
        # the question shows the inputs the answer was computed from
        assert all(v in q.question(calc.kind, 0) for k, v in q.fields.items() if k != "term_adj")


def test_generated_numeric_records_carry_their_answer_in_the_text():
    records = generate_synthetic(["finance"], 400, seed=4)
    numeric = [r for r in records if r["answer_type"] == "numeric"]
    text = [r for r in records if r["answer_type"] == "text"]
    assert len(numeric) >= 150 and len(text) >= 150
    assert {r["fact_id"] for r in numeric} == {f"finance.calc.{name}" for name in CALCULATIONS}
    for r in numeric:
        shown = f"{r['numeric_answer']:.2f}" if r["fact_id"] != "finance.calc.break_even" else \
            str(int(r["numeric_answer"]))
        assert shown in r["output"]
        assert float(NUMBER.findall(r["output"])[-1]) == r["numeric_answer"]
    assert all(r["numeric_answer"] is None for r in text)


# ---------------------------------------------------------------- fact tables and text quality

def test_fact_tables_hold_at_least_30_subjects_per_domain_with_several_paraphrases():
    for domain in ALL:
        subjects = {f.fact_id.split(".")[1] for f in FACTS[domain]}
        assert len(subjects) >= 30, domain
        assert all(len(kind.templates) >= 5 for kind in KINDS[domain]), domain
    conditions = defaultdict(set)
    for f in FACTS["healthcare"]:
        conditions[f.fact_id.split(".")[1]].add(f.fact_id.split(".")[2])
    assert all({"symptoms", "tests", "treatment", "specialist"} <= fields for fields in conditions.values())
    assert len(CALCULATIONS) >= 6


def test_questions_and_answers_read_as_complete_concise_text():
    for domain in ALL:
        for fact in FACTS[domain]:
            assert 5 <= len(fact.answer.split()) <= 60 and fact.answer.endswith("."), fact.fact_id
            for t in range(len(fact.kind.templates)):
                question = fact.question(t)
                assert "{" not in question and question[0].isupper() and question.endswith(("?", "."))


def _shingles(text: str) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + 3]) for i in range(len(words) - 2)}


def test_paraphrases_of_one_fact_are_not_near_duplicates_for_the_cleaning_step():
    # The cleaning step drops pairs at word-3-shingle Jaccard >= 0.9 (conf/prepare: near_dup_threshold).
    # Paraphrases share one answer, so short templates could trip it and silently shrink the data.
    for domain in ALL:
        for fact in FACTS[domain]:
            texts = [_shingles(fact.question(t) + " " + fact.answer) for t in range(len(fact.kind.templates))]
            for a, b in itertools.combinations(texts, 2):
                assert len(a & b) / len(a | b) < 0.9, fact.fact_id


# ---------------------------------------------------------------- record rendering and errors

def test_messages_include_the_system_prompt_only_when_given():
    with_prompt = generate_synthetic(["legal"], 5, seed=0, system_prompt="You are a legal assistant.")
    for r in with_prompt:
        assert [m["role"] for m in r["messages"]] == ["system", "user", "assistant"]
        assert r["messages"][0]["content"] == "You are a legal assistant."
        assert r["messages"][1]["content"] == r["instruction"] and r["messages"][2]["content"] == r["output"]
    without = generate_synthetic(["legal"], 5, seed=0)
    assert all([m["role"] for m in r["messages"]] == ["user", "assistant"] for r in without)


def test_records_carry_the_agreed_extra_fields():
    for r in generate_synthetic(ALL, 30, seed=0):
        assert r["fact_id"].startswith(r["domain"] + ".") and r["template_id"].startswith(r["domain"] + ".")
        assert isinstance(r["held_out"], bool) and r["answer_type"] in ("text", "numeric")


def test_disclaimer_says_synthetic_and_not_advice():
    text = DISCLAIMER.lower()
    assert "synthetic" in text and "not medical, legal or financial advice" in text


def test_unknown_domain_is_named_with_the_supported_ones():
    with pytest.raises(StageError, match=r"'astrology'.*healthcare, legal, finance"):
        generate_synthetic(["healthcare", "astrology"], 10, seed=0)


@pytest.mark.parametrize("kwargs,pattern", [
    ({"num_samples": 0}, "num_samples"),
    ({"num_samples": -5}, "num_samples"),
    ({"domains": []}, "no synthetic domain"),
    ({"domains": ["legal", "legal"]}, "twice"),
    ({"held_out_templates": 6}, "held_out_templates"),
    ({"held_out_templates": 0}, "held_out_templates is 0"),
    ({"test_fraction": 1.0}, "test fraction"),
    ({"test_questions": -1}, "data.test_questions must be a whole number >= 0"),
    ({"test_questions": True}, "data.test_questions must be a whole number >= 0"),
    ({"test_questions": "100"}, "data.test_questions must be a whole number >= 0"),
    ({"held_out_templates": 0, "test_questions": 5}, "held_out_templates is 0"),
])
def test_bad_arguments_raise_one_line_stage_errors(kwargs, pattern):
    args = {"domains": ["legal"], "num_samples": 10, "seed": 0} | kwargs
    with pytest.raises(StageError, match=pattern) as error:
        generate_synthetic(**args)
    assert "\n" not in str(error.value)
