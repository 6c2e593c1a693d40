"""Finance question kinds: the definition of common personal-finance and investing terms, a worked example of
each and why it matters, asked in several paraphrases. The computed numeric questions (interest, loan payments,
ROI, ...) live in finance_calc.py.

    from stages.prepare.synthetic.finance import FINANCE_FACTS, FINANCE_KINDS

The statements are standard textbook ones (finance_lending.py, finance_investing.py); they are for demonstrating
fine-tuning, not financial advice. Three kinds per term give enough facts (126) that the held-out-facts splits
(data.held_out_facts, data.validation_held_out_facts) can hold out 20-30 of them and still leave most taught.
"""

from __future__ import annotations

from stages.prepare.synthetic.facts import QuestionKind, StaticFact, facts_from_table
from stages.prepare.synthetic.finance_investing import INVESTING_TERMS
from stages.prepare.synthetic.finance_lending import LENDING_TERMS

# The last templates of each kind are the held-out ones (data.held_out_templates), so append new paraphrases
# before them.
FINANCE_KINDS: dict[str, QuestionKind] = {
    "definition": QuestionKind("finance.definition", (
        "What is {subject}?",
        "How would you define {subject} in plain language?",
        "What is meant by {subject} in finance?",
        "Can you explain {subject} to a beginner investor?",
        "Give me a clear definition of {subject}.",
        "Explain {subject} in one or two sentences.",
    )),
    "example": QuestionKind("finance.example", (
        "Give an example of {subject}.",
        "Can you illustrate {subject} with a concrete example?",
        "Show how {subject} works in a simple example.",
        "What is a practical example of {subject}?",
        "Walk me through an example of {subject} with numbers or a real case.",
        "How would you explain {subject} with an everyday example?",
    )),
    "importance": QuestionKind("finance.importance", (
        "Why does {subject} matter?",
        "Why is {subject} important?",
        "What is the practical significance of {subject}?",
        "Why should investors or borrowers care about {subject}?",
        "How does {subject} affect financial decisions?",
        "What makes {subject} worth understanding when managing money?",
    )),
}

TERMS: list[dict] = LENDING_TERMS + INVESTING_TERMS
FINANCE_FACTS: list[StaticFact] = facts_from_table("finance", FINANCE_KINDS, TERMS)
