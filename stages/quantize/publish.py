"""What ships next to the GGUFs: manifest.json (sha256, size, type, source, git commit, params) and an
Ollama Modelfile.

    ollama create domain-llm -f models/gguf/Modelfile      # after `dvc pull models/gguf`
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

from stages.fileio import write_json, write_text

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


def source_model_info(model_dir: Path) -> dict:
    """Where the GGUFs came from: the HF folder, its architecture and the sha256 of its weights."""
    config = json.loads((model_dir / "config.json").read_text()) if (model_dir / "config.json").is_file() else {}
    weights = {p.name: sha256_file(p) for p in sorted(model_dir.glob("*.safetensors"))}
    return {"path": str(model_dir), "architectures": config.get("architectures"), "weights_sha256": weights}


def write_manifest(out_dir: Path, files: dict[str, Path], source: dict, params: dict,
                   quantize_reports: dict[str, dict]) -> dict:
    """manifest.json describing every GGUF in `out_dir`; returns it."""
    manifest = {
        "source_model": source,
        "git_commit": git_commit(),
        "params": params,
        "files": [
            {"file": path.name, "type": type_name, "sha256": sha256_file(path), "size_bytes": path.stat().st_size,
             **({"tensor_types": quantize_reports[type_name]["tensor_types"],
                 "fallback_tensors": quantize_reports[type_name]["fallback_count"],
                 "tensor_type_overrides": quantize_reports[type_name].get("overrides", {}),
                 "imatrix_entries": quantize_reports[type_name].get("imatrix_entries", 0),
                 "bits_per_weight": round(quantize_reports[type_name]["bits_per_weight"], 3)}
                if type_name in quantize_reports else {})}
            for type_name, path in files.items()
        ],
    }
    write_json(out_dir / MANIFEST, manifest)
    return manifest


def modelfile_text(gguf_name: str, chat_template: str | None, system_prompt: str | None, stop: list[str]) -> str:
    """An Ollama Modelfile. ChatML templates (SmolLM2, ours) get the equivalent Go template; for others Ollama
    reads tokenizer.chat_template from the GGUF itself."""
    lines = ["# Ollama: ollama create domain-llm -f Modelfile   (then: ollama run domain-llm)",
             f"FROM ./{gguf_name}", ""]
    if chat_template and "<|im_start|>" in chat_template:
        lines += ['TEMPLATE """{{- if .System }}<|im_start|>system',
                  "{{ .System }}<|im_end|>",
                  "{{ end }}{{- range .Messages }}<|im_start|>{{ .Role }}",
                  "{{ .Content }}<|im_end|>",
                  '{{ end }}<|im_start|>assistant', '"""', ""]
    if system_prompt:
        lines += [f'SYSTEM """{system_prompt.strip()}"""', ""]
    lines += [f'PARAMETER stop "{s}"' for s in stop]
    lines += ["PARAMETER temperature 0", ""]
    return "\n".join(lines)


def write_modelfile(out_dir: Path, gguf_name: str, chat_template: str | None, system_prompt: str | None,
                    stop: list[str]) -> Path:
    path = out_dir / "Modelfile"
    write_text(path, modelfile_text(gguf_name, chat_template, system_prompt, stop))
    return path
