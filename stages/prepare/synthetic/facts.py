"""Shapes shared by the per-domain fact tables: a question kind (one fact field with its paraphrases) and a
static fact (one subject's canonical answer for that field).

    from stages.prepare.synthetic.facts import QuestionKind, StaticFact, facts_from_table

A kind's LAST templates are the held-out ones (see generator.py), so append new paraphrases before them.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QuestionKind:
    """One fact field of a domain, e.g. `healthcare.symptoms`, with its question paraphrases."""

    kind_id: str
    # Each template has a `{subject}` placeholder (computed finance kinds use their own placeholders).
    templates: tuple[str, ...]

    def template_id(self, index: int) -> str:
        return f"{self.kind_id}.{index}"


@dataclass(frozen=True)
class StaticFact:
    """The one canonical answer about `subject` for a kind, so the reference answer is stable."""

    fact_id: str  # e.g. "healthcare.asthma.symptoms"
    kind: QuestionKind
    subject: str  # as it reads inside a question, e.g. "asthma" or "a tort"
    answer: str

    def question(self, template_index: int) -> str:
        text = self.kind.templates[template_index].format(subject=self.subject)
        # Subjects are written lowercase to read well mid-sentence; a question may start with one.
        return text[0].upper() + text[1:]


def facts_from_table(domain: str, kinds: dict[str, QuestionKind], table: list[dict]) -> list[StaticFact]:
    """Expand rows like {"key": "asthma", "subject": "asthma", "symptoms": "...", ...} into facts.

    A row may leave out a field that does not apply to it (e.g. risk factors of appendicitis).
    """
    facts = []
    for row in table:
        for field, kind in kinds.items():
            answer = row.get(field)
            if answer:
                facts.append(StaticFact(f"{domain}.{row['key']}.{field}", kind, row["subject"], answer))
    return facts
