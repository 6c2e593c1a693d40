"""Legal question kinds: definition, elements, an example and the area of law of general common-law
concepts, asked in several paraphrases.

    from stages.prepare.synthetic.legal import LEGAL_FACTS, LEGAL_KINDS

The statements stay at textbook level and avoid jurisdiction-specific rules (time limits, ages, exceptions
vary by place); they are for demonstrating fine-tuning, not legal advice.
"""

from __future__ import annotations

from stages.prepare.synthetic.facts import QuestionKind, StaticFact, facts_from_table
from stages.prepare.synthetic.legal_contracts_torts import CONTRACT_AND_TORT_CONCEPTS
from stages.prepare.synthetic.legal_property_crime import PROPERTY_CRIME_PROCEDURE_CONCEPTS

# Subjects carry their own article ("a tort", "habeas corpus") so every template reads naturally.
# The last template of each kind is the first to be held out for the test split.
LEGAL_KINDS: dict[str, QuestionKind] = {
    "definition": QuestionKind("legal.definition", (
        "What is {subject}?",
        "How would you define {subject} in legal terms?",
        "Explain the legal concept of {subject}.",
        "What does the law mean by {subject}?",
        "What is meant by {subject}?",
        "Could you give a short explanation of {subject} for a law student?",
    )),
    "elements": QuestionKind("legal.elements", (
        "What are the elements of {subject}?",
        "What must be proved to establish {subject}?",
        "What are the requirements for {subject}?",
        "Which elements does a court look for in {subject}?",
        "Break {subject} down into its legal elements.",
        "List the essential elements of {subject}.",
    )),
    "example": QuestionKind("legal.example", (
        "Give an example of {subject}.",
        "Show how {subject} works in a concrete scenario.",
        "Can you illustrate {subject} with an example?",
        "Describe a situation that involves {subject}.",
        "What might {subject} look like in everyday life?",
        "What would be a typical case of {subject}?",
    )),
    "area": QuestionKind("legal.area", (
        "Which area of law does {subject} belong to?",
        "In which branch of law would you study {subject}?",
        "What field of law covers {subject}?",
        "Which body of law governs {subject}?",
        "Under which part of the law does {subject} fall?",
        "Which legal subject area deals with {subject}?",
    )),
}

CONCEPTS: list[dict] = CONTRACT_AND_TORT_CONCEPTS + PROPERTY_CRIME_PROCEDURE_CONCEPTS
LEGAL_FACTS: list[StaticFact] = facts_from_table("legal", LEGAL_KINDS, CONCEPTS)
