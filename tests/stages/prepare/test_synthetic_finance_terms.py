"""The finance term table (finance_lending.py, finance_investing.py): three kinds per term, worked examples whose
numbers are right, and fact sheets whose chunks hold each answer whole.

    pytest tests/stages/prepare/test_synthetic_finance_terms.py -q
"""

from __future__ import annotations

import pytest

from stages.config import compose
from stages.index.chunking import chunk_text
from stages.index.documents import fact_sheets
from stages.prepare.synthetic.finance import FINANCE_KINDS, TERMS
from stages.prepare.synthetic.generator import FACTS

BY_KEY = {term["key"]: term for term in TERMS}


def cents(value: float) -> str:
    return f"{value:.2f}"


# The figure(s) each worked example must state, recomputed here from the example's own inputs.
EXAMPLE_FIGURES: dict[str, list[str]] = {
    "apy": [cents(100 * ((1 + 0.05 / 12) ** 12 - 1)) + "%"],
    "compound_interest": [f"${1000 * 1.1:.0f}", f"${1000 * 1.1 ** 2:.0f}"],
    "simple_interest": [f"${2000 * 0.05 * 3:.0f}"],
    "bond": [f"${1000 * 0.04:.0f}"],
    "bond_yield": [cents(100 * 50 / 900) + "%"],
    "coupon_rate": [f"${5000 * 0.03:.0f}", f"${5000 * 0.03 / 2:.0f}"],
    "amortization": [f"${200000 * 0.005 * 1.005 ** 360 / (1.005 ** 360 - 1):.0f}", f"${200000 * 0.005:.0f}",
                     f"${200000 * 0.005 * 1.005 ** 360 / (1.005 ** 360 - 1) - 200000 * 0.005:.0f}"],
    "principal": [f"${15000 - 3000}"],
    "mortgage": [f"${300000 - 60000}"],
    "inflation": [f"${100 * 1.03:.0f}"],
    "opportunity_cost": [f"${5000 * 0.05:.0f}"],
    "time_value_of_money": [f"${1000 * 1.05:.0f}"],
    "npv": ["$" + cents(1100 / 1.05 - 1000), cents(1100 / 1.05)],
    "rule_of_72": [f"{72 / 6:.0f} years", f"{72 / 3:.0f} years"],
    "stock": [f"{100 * 100 / 1_000_000:.2f}%"],
    "pe_ratio": [f"{60 / 3:.0f}."],
    "eps": [f"${10_000_000 / 5_000_000:.0f}."],
    "dividend": [f"${0.5 * 100:.0f} each quarter", f"${0.5 * 100 * 4:.0f} a year"],
    "dividend_yield": [f"{100 * 2 / 50:.0f}%."],
    "market_cap": [f"${100 * 25 / 1000:.1f} billion"],
    "expense_ratio": [f"${10000 * 0.01:.0f} a year", f"${10000 * 0.001:.0f} a year"],
    "dollar_cost_averaging": [f"{200 // 20 + 200 // 10} shares", f"${400 / 30:.2f}"],
    "capital_gain": [f"${2600 - 2000}"],
    "roi": [f"{100 * (6500 - 5000) / 5000:.0f}%", f"${6500 - 5000}"],
    "net_worth": [f"${300000 + 50000 - 200000 - 10000}"],
    "emergency_fund": [f"${3 * 3000}", f"${6 * 3000}"],
    "cash_flow": [f"${4000 - 3500}"],
    "balance_sheet": [f"${500000 - 300000}"],
}


def test_every_term_has_a_definition_an_example_and_why_it_matters():
    assert len(TERMS) == 42 and len(BY_KEY) == 42
    assert set(FINANCE_KINDS) == {"definition", "example", "importance"}
    for term in TERMS:
        assert all(term.get(kind) for kind in FINANCE_KINDS), term["key"]
        assert term["example"].startswith("For example, "), term["key"]
    assert len(FACTS["finance"]) == 3 * 42
    # six paraphrases per kind, so held_out_templates up to 5 leaves training one
    assert all(len(kind.templates) == 6 for kind in FINANCE_KINDS.values())


@pytest.mark.parametrize("key", sorted(EXAMPLE_FIGURES))
def test_worked_example_states_the_recomputed_figures(key):
    for figure in EXAMPLE_FIGURES[key]:
        assert figure in BY_KEY[key]["example"], (key, figure)


def figures(text: str) -> set[str]:
    """Words with digits, less names that hold a number (the S&P 500)."""
    return {word.strip(".,;:()") for word in text.replace("S&P 500", "").split() if any(c.isdigit() for c in word)}


def test_an_example_does_not_repeat_a_figure_its_definition_already_teaches():
    # test_facts may ask an example while training states the definition: a shared worked figure would give it
    # away. A number in the term's own name (the rule of 72) is no worked figure.
    shared = {term["key"]: figures(term["definition"]) & figures(term["example"]) - figures(term["subject"])
              for term in TERMS}
    assert {key: found for key, found in shared.items() if found} == {}


@pytest.mark.parametrize("domain", sorted(FACTS))
def test_each_fact_sheet_chunk_holds_whole_answers(domain):
    """Grounded examples and the retrieval metrics look for an answer verbatim in one chunk: with the default
    chunking every answer must fit whole, and a finance sheet reads definition, example, why it matters."""
    index = compose([]).index
    sheets = fact_sheets(domain)
    chunks = {doc.doc_id: chunk_text(doc.text, int(index.chunk_words), int(index.overlap_words)) for doc in sheets}
    for fact in FACTS[domain]:
        entity = fact.fact_id.rsplit(".", 1)[0]
        assert any(fact.answer in chunk for chunk in chunks[entity]), fact.fact_id
    if domain == "finance":
        apr = next(doc for doc in sheets if doc.doc_id == "finance.apr")
        assert apr.title == "APR (annual percentage rate)"
        assert apr.text.split("\n\n") == [BY_KEY["apr"]["definition"], BY_KEY["apr"]["example"],
                                          BY_KEY["apr"]["importance"]]
