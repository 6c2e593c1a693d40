"""Fixtures for the reranker tests: a small fact-table Q&A set in prepared-data form and a tiny BERT cross-encoder."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stages.fileio import write_jsonl
from stages.prepare.records import make_record

SUBJECTS = {
    "asthma": ("wheezing, chest tightness and shortness of breath", "inhaled corticosteroids and bronchodilators",
               "airway inflammation triggered by allergens or irritants"),
    "type 2 diabetes": ("thirst, frequent urination and fatigue", "metformin, diet and exercise",
                        "insulin resistance linked to obesity and inactivity"),
    "hypertension": ("usually none; sometimes headache", "ACE inhibitors, thiazides and less salt",
                     "stiff arteries, salt, obesity and genetics"),
    "migraine": ("throbbing one-sided headache with nausea", "triptans and NSAIDs at onset",
                 "abnormal brain activity with triggers such as stress"),
    "iron deficiency anemia": ("pale skin, fatigue and brittle nails", "oral iron supplements",
                               "blood loss or too little dietary iron"),
    "influenza": ("fever, cough and muscle aches", "rest, fluids and oseltamivir if early",
                  "infection with influenza A or B viruses"),
}
KINDS = {
    "symptoms": ("What are the symptoms of {s}?", "Which symptoms does {s} cause?", "How does {s} present?"),
    "treatment": ("How is {s} treated?", "What is the treatment for {s}?", "Which therapy is used for {s}?"),
    "cause": ("What causes {s}?", "Why does {s} develop?", "What is the cause of {s}?"),
}
HELD_OUT_TEMPLATE = 2


@pytest.fixture(autouse=True)
def one_torch_thread():
    """The test machine is shared: one thread per test process."""
    torch.set_num_threads(1)


def qa_records(template_indices: tuple[int, ...], domain: str = "healthcare") -> list[dict]:
    """One record per (subject, kind, template); the answer text is the same for every template of a fact."""
    records = []
    for subject, answers in SUBJECTS.items():
        for (kind, templates), answer in zip(KINDS.items(), answers, strict=True):
            for t in template_indices:
                records.append(make_record(domain, templates[t].format(s=subject),
                                           f"The {kind} of {subject}: {answer}.", "synthetic",
                                           fact_id=f"{domain}.{subject}.{kind}", template_id=f"{kind}.{t}"))
    return records


@pytest.fixture()
def prepared_dir(tmp_path) -> Path:
    """data/processed/healthcare/{train,validation,test}.jsonl; test uses the held-out template only."""
    out = tmp_path / "processed" / "healthcare"
    write_jsonl(out / "train.jsonl", qa_records((0,)))
    write_jsonl(out / "validation.jsonl", qa_records((1,))[:6])
    write_jsonl(out / "test.jsonl", qa_records((HELD_OUT_TEMPLATE,)))
    return out


@pytest.fixture(scope="session")
def subject_index(tmp_path_factory) -> Path:
    """models/index built by the index stage over one fact sheet per subject (paragraphs = answers), chunked so
    that a sheet spans two passages."""
    from stages.config import compose
    from stages.index.main import main

    root = tmp_path_factory.mktemp("subject_index")
    docs = root / "docs"
    docs.mkdir()
    for record_subject in SUBJECTS:
        facts = [r["output"] for r in qa_records((0,)) if r["fact_id"].split(".")[1] == record_subject]
        (docs / f"{record_subject.replace(' ', '_')}.md").write_text(f"# {record_subject}\n\n" + "\n\n".join(facts))
    main(compose([f"index.docs_dir={docs}", f"paths.index={root / 'index'}", f"paths.metrics={root / 'metrics'}",
                  "index.chunk_words=25", "index.overlap_words=0"]))
    return root / "index"
