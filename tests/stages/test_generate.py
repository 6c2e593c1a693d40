"""`domain-llm generate` prints an answer from a GGUF file or an HF folder; a bad path is one clear line."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

DOMAIN_LLM = str(Path(sys.executable).parent / "domain-llm")


def run_cli(*args: str, cwd=None) -> subprocess.CompletedProcess:
    return subprocess.run([DOMAIN_LLM, *args], capture_output=True, text=True, timeout=300, cwd=cwd)


def test_generate_from_gguf_answers(smollm2_gguf, tmp_path):
    result = run_cli("generate", "What color is the sky on a clear day?", "--model", str(smollm2_gguf),
                     "--max-new-tokens", "24", "--system", "", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "blue" in result.stdout.lower()


def test_generate_from_hf_folder(tiny_model_dir, tmp_path):
    result = run_cli("generate", "hello", "--model", str(tiny_model_dir), "--max-new-tokens", "4", cwd=tmp_path)
    assert result.returncode == 0, result.stderr  # random weights: any text (even none) is a valid answer


def test_generate_missing_model_is_one_line_error(tmp_path):
    result = run_cli("generate", "hello", "--model", str(tmp_path / "nope.gguf"), cwd=tmp_path)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "nope.gguf" in result.stderr and "not found" in result.stderr
