"""Fixtures for the train stage tests: small chat JSONL splits built with the prepare stage's record schema,
and a composed config whose paths all point into tmp_path."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from stages.fileio import write_jsonl
from stages.prepare.records import make_record

SYSTEM = "You are a careful medical information assistant."
FACTS = [
    ("What is the normal resting heart rate for adults?", "60 to 100 beats per minute."),
    ("How many bones are in the adult human body?", "206 bones."),
    ("What is a normal body temperature?", "About 37 degrees Celsius."),
    ("Which organ produces insulin?", "The pancreas."),
    ("What vitamin does sunlight help the body make?", "Vitamin D."),
    ("What is the main symptom of hypoglycemia?", "Shakiness and sweating."),
    ("How long should adults sleep each night?", "Seven to nine hours."),
    ("What does a stethoscope listen to?", "Heart and lung sounds."),
]


def chat_records(n: int, offset: int = 0) -> list[dict]:
    rows = []
    for i in range(n):
        question, answer = FACTS[(i + offset) % len(FACTS)]
        rows.append(make_record("healthcare", f"{question} (case {i + offset})", answer, "synthetic",
                                system_prompt=SYSTEM))
    return rows


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


@pytest.fixture()
def chat_data(tmp_path) -> Path:
    """tmp_path/data/processed/healthcare/{train,validation}.jsonl with 16 / 4 rows."""
    folder = tmp_path / "data" / "processed" / "healthcare"
    write_jsonl(folder / "train.jsonl", chat_records(16))
    write_jsonl(folder / "validation.jsonl", chat_records(4, offset=3))
    return tmp_path / "data" / "processed"


def train_overrides(root: Path, base: Path, *extra: str) -> list[str]:
    """Hydra overrides for a fast tiny-model run with every path inside `root`."""
    return [
        "domain=healthcare", "model=tiny-random", "threads=1",
        f"paths.processed={root / 'data' / 'processed'}", f"paths.base_model={base}",
        f"paths.adapter={root / 'models' / 'adapter'}", f"paths.merged={root / 'models' / 'merged'}",
        f"paths.metrics={root / 'metrics'}",
        f"train.checkpoint_dir={root / 'models' / 'checkpoints'}", f"train.live_dir={root / 'metrics' / 'live'}",
        "train.batch_size=4", "train.max_steps=8", "train.lr=5e-3", "train.warmup_ratio=0.0",
        "train.logging_steps=2", "train.eval_steps=4", "train.save_steps=4", "train.lora.r=8",
        "train.lora.dropout=0.0", *extra,
    ]


@pytest.fixture()
def train_cfg(tmp_path, chat_data, tiny_model_dir, cfg_factory):
    def make(*extra: str):
        return cfg_factory(*train_overrides(tmp_path, tiny_model_dir, *extra))
    return make
