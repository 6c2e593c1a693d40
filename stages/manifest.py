"""manifest.json: what a published model is, written by the stage that publishes it and read by whoever serves it.

    write_manifest(out_dir, files, source, params, reports, served={"domain": "legal", "system_prompt": "..."})
    served_model_facts(Path("models/gguf/model-q4_k_m.gguf"))   # {"domain": "legal", "system_prompt": "..."}

The `quantize` stage writes one next to the GGUFs, the `train` stage one inside the merged HF folder. The
`served` block holds what the model was trained with (its domain and system prompt), so a server uses the
model's own system prompt rather than whatever the current config says.
"""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
from pathlib import Path

from stages.fileio import write_json

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def git_commit(cwd: Path | None = None) -> str | None:
    """HEAD of the repository we run in (None outside git); '+dirty' when tracked files differ."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, check=True)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                               capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")


def file_entry(path: Path, type_name: str, report: dict | None) -> dict:
    entry = {"file": path.name, "type": type_name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size}
    if report is not None:
        entry.update(tensor_types=report["tensor_types"], fallback_tensors=report["fallback_count"],
                     tensor_type_overrides=report.get("overrides", {}),
                     imatrix_entries=report.get("imatrix_entries", 0),
                     bits_per_weight=round(report["bits_per_weight"], 3))
    return entry


def write_manifest(out_dir: Path, files: dict[str, Path], source: dict, params: dict,
                   quantize_reports: dict[str, dict], served: dict | None = None) -> dict:
    """manifest.json describing every model file in `out_dir`; returns it."""
    manifest = {
        "source_model": source,
        "git_commit": git_commit(),
        "params": params,
        "served": served or {},
        "files": [file_entry(path, type_name, quantize_reports.get(type_name)) for type_name, path in files.items()],
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def read_manifest(model_path: Path) -> dict | None:
    """The manifest of a model: next to a GGUF file, or inside an HF folder; None when there is none."""
    model_path = Path(model_path)
    path = (model_path if model_path.is_dir() else model_path.parent) / MANIFEST
    if not path.is_file():
        return None
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        log.warning("%s: unreadable manifest (%s); the model's domain and system prompt are unknown", path, e)
        return None
    return manifest if isinstance(manifest, dict) else None


def served_model_facts(model_path: Path) -> dict:
    """{"domain": str | None, "system_prompt": str | None} the model was trained with, from its manifest."""
    manifest = read_manifest(model_path) or {}
    served = manifest.get("served") if isinstance(manifest.get("served"), dict) else {}
    domain = served.get("domain") or (manifest.get("params") or {}).get("domain")
    system = served.get("system_prompt")
    return {"domain": domain if isinstance(domain, str) else None,
            "system_prompt": system if isinstance(system, str) and system else None}
