"""A project folder laid out as `dvc repro` leaves it, from the tiny models of tests/adapter_models.py: the base
GGUF under models/gguf, each domain's adapter GGUF + manifest under models/adapters/<d>, its PEFT folder under
models/adapter/<d>, the HF base under models/base, and the repository's params.yaml."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from stages.manifest import sha256_file

REPO_ROOT = Path(__file__).resolve().parents[2]


def published_project(out: Path, files: dict, base_dir: Path, domains=("legal", "healthcare")) -> Path:
    models = out / "models"
    (models / "gguf").mkdir(parents=True)
    base = models / "gguf" / "model-q4_k_m.gguf"  # the name the config serves; a tiny f32 GGUF here
    shutil.copy2(files["base"], base)
    shutil.copytree(base_dir, models / "base")
    for domain in domains:
        published = models / "adapters" / domain
        published.mkdir(parents=True)
        shutil.copy2(files[domain], published / "adapter.gguf")
        (published / "manifest.json").write_text(json.dumps({
            "domain": domain, "adapter": {"file": "adapter.gguf"},
            "base": {"file": base.name, "sha256": sha256_file(base)}}))
        shutil.copytree(files["base"].parent / f"peft-{domain}", models / "adapter" / domain)
    shutil.copy2(REPO_ROOT / "params.yaml", out / "params.yaml")
    return out
