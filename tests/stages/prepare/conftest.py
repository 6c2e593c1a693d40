"""Fixtures for the prepare stage tests: configs writing into tmp dirs, and real data files of every type."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

TOPICS = [
    "consideration", "negligence", "an affidavit", "habeas corpus", "mens rea", "a subpoena", "a tort",
    "an injunction", "a warranty", "an easement", "a fiduciary duty", "estoppel", "a lien", "an indemnity clause",
    "a power of attorney", "a class action", "double jeopardy", "a plea bargain", "due process", "an appeal",
    "a deposition", "a trust", "probate", "a covenant", "adverse possession", "strict liability", "hearsay",
    "a misdemeanor", "a felony", "a tenancy agreement", "intellectual property", "a trademark", "a patent",
    "a copyright", "defamation", "a settlement", "arbitration", "mediation", "jurisdiction", "a statute",
]
QUESTIONS = ["What is {t}?", "Could you explain {t} to a first-year student?", "Why does {t} matter in practice?"]


def sample_examples(n: int) -> list[dict]:
    """n distinct English examples (instruction, input, output); no two prompts are near-duplicates."""
    out = []
    for i in range(n):
        topic, question = TOPICS[i % len(TOPICS)], QUESTIONS[(i // len(TOPICS)) % len(QUESTIONS)]
        out.append({"instruction": question.format(t=topic),
                    "input": "Answer for a general audience." if i % 4 == 0 else "",
                    "output": f"In short, {topic} is a legal notion that lawyers explain carefully to their "
                              f"clients before any decision is taken, with examples drawn from real cases."})
    return out


def to_format(example: dict, fmt: str) -> dict:
    if fmt == "alpaca":
        return dict(example)
    if fmt == "qa":
        return {"question": example["instruction"], "answer": example["output"], "context": example["input"]}
    user = example["instruction"] + (f"\n\n{example['input']}" if example["input"] else "")
    if fmt == "chat":
        return {"messages": [{"role": "system", "content": "ignored"}, {"role": "user", "content": user},
                             {"role": "assistant", "content": example["output"]}]}
    return {"conversations": [{"from": "human", "value": user}, {"from": "gpt", "value": example["output"]}]}


def write_rows(path: Path, rows: list[dict]) -> Path:
    """Write rows as JSON, JSONL, CSV or Parquet by the path's extension."""
    kind = path.suffix.lstrip(".")
    if kind == "jsonl":
        path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    elif kind == "json":
        path.write_text(json.dumps({"data": rows}), encoding="utf-8")
    elif kind == "csv":
        with open(path, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pylist(rows), path)
    else:
        raise ValueError(kind)
    return path


@pytest.fixture()
def prep_cfg(tmp_path, cfg_factory):
    """Compose conf/ with outputs in tmp_path and no tokenizer (lengths in characters)."""
    def make(*overrides: str):
        return cfg_factory(f"paths.processed={tmp_path / 'data'}", f"paths.metrics={tmp_path / 'metrics'}",
                           f"paths.base_model={tmp_path / 'no_model'}", *overrides)
    return make


def read_split(tmp_path: Path, domain: str, split: str) -> list[dict]:
    lines = (tmp_path / "data" / domain / f"{split}.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines]
