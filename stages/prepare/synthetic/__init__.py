"""Synthetic domain Q&A for the prepare stage: fact tables per domain, several question paraphrases per
fact, computed finance questions with checkable numeric answers, and held-out phrasings for the test split.

    from stages.prepare.synthetic import DISCLAIMER, generate_synthetic
    records = generate_synthetic(["finance"], num_samples=200, seed=0, system_prompt="You are ...")
    # each record: id, domain, instruction, input, output, source="synthetic", messages, fact_id,
    # template_id, held_out, answer_type ("text" | "numeric"), numeric_answer (float | None)

Modules: generator.py (sampling), facts.py (shapes), healthcare*.py, legal*.py, finance.py + finance_lending.py +
finance_investing.py (fact tables and paraphrases), finance_calc.py + finance_math.py (computed questions and
their exact formulas).
"""

from __future__ import annotations

from stages.prepare.synthetic.generator import SUPPORTED_DOMAINS, generate_synthetic

DISCLAIMER = (
    "This dataset is synthetic: questions and answers were generated from small hand-written fact tables and "
    "formulas to demonstrate and test fine-tuning. It is not medical, legal or financial advice. The facts were "
    "checked against mainstream textbook knowledge but are simplified and not exhaustive, and legal rules vary "
    "by jurisdiction. Numeric finance answers are computed exactly and rounded half-up to cents."
)

__all__ = ["DISCLAIMER", "SUPPORTED_DOMAINS", "generate_synthetic"]
