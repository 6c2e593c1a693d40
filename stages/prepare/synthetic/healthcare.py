"""Healthcare question kinds: symptoms, diagnostic tests, first-line treatment, specialist and risk factors
of common conditions, asked in several paraphrases.

    from stages.prepare.synthetic.healthcare import HEALTHCARE_FACTS, HEALTHCARE_KINDS

The facts are mainstream textbook statements (see healthcare_conditions*.py); they are for demonstrating
fine-tuning, not medical advice.
"""

from __future__ import annotations

from stages.prepare.synthetic.facts import QuestionKind, StaticFact, facts_from_table
from stages.prepare.synthetic.healthcare_conditions import CONDITIONS_A
from stages.prepare.synthetic.healthcare_conditions_more import CONDITIONS_B

# The last template of each kind is the first to be held out for the test split.
HEALTHCARE_KINDS: dict[str, QuestionKind] = {
    "symptoms": QuestionKind("healthcare.symptoms", (
        "What are the symptoms of {subject}?",
        "Which symptoms are typical of {subject}?",
        "How does {subject} usually present?",
        "What signs might suggest that someone has {subject}?",
        "If someone had {subject}, what would they notice?",
        "Describe the common symptoms of {subject}.",
    )),
    "tests": QuestionKind("healthcare.tests", (
        "How is {subject} diagnosed?",
        "Which tests are used to diagnose {subject}?",
        "What investigations help confirm {subject}?",
        "How do doctors test for {subject}?",
        "What tests does a doctor order to check for {subject}?",
        "What diagnostic tests are done when {subject} is suspected?",
    )),
    "treatment": QuestionKind("healthcare.treatment", (
        "How is {subject} treated?",
        "What is the first-line treatment for {subject}?",
        "What are the main treatment options for {subject}?",
        "How do doctors usually manage {subject}?",
        "What can be done to treat {subject}?",
        "What is the standard treatment for {subject}?",
    )),
    "specialist": QuestionKind("healthcare.specialist", (
        "Which specialist treats {subject}?",
        "What kind of doctor manages {subject}?",
        "Which medical specialty deals with {subject}?",
        "Who should a patient see about {subject}?",
        "Which doctor is the right one to see for {subject}?",
        "To which type of specialist are patients with {subject} referred?",
    )),
    "risk_factors": QuestionKind("healthcare.risk_factors", (
        "What are the risk factors for {subject}?",
        "Who is at higher risk of {subject}?",
        "What increases the risk of developing {subject}?",
        "Which factors make {subject} more likely?",
        "What puts people at risk of {subject}?",
        "What raises a person's risk of {subject}?",
    )),
}

CONDITIONS: list[dict] = CONDITIONS_A + CONDITIONS_B
HEALTHCARE_FACTS: list[StaticFact] = facts_from_table("healthcare", HEALTHCARE_KINDS, CONDITIONS)
