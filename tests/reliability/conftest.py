"""Helpers for the reliability suite: the `domain-llm` CLI as a subprocess, its one-line errors, and a real
`domain-llm serve` on 127.0.0.1 (started with tests/serving's helpers, stopped by PID)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.serving.conftest import REPO_ROOT

CLI = Path(sys.executable).with_name("domain-llm")


def run_cli(*args: str, cwd: Path = REPO_ROOT, timeout: float = 300, env: dict | None = None
            ) -> subprocess.CompletedProcess:
    """`domain-llm ARGS...` from the venv, as a user runs it (cwd = the repo, so conf/ is the project's)."""
    return subprocess.run([str(CLI), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "HF_HUB_OFFLINE": "1", **(env or {})})


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("error:")]


def assert_one_line_error(result: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit code 2, no traceback, exactly one `error:` line (the last one), containing each `expected`."""
    context = f"exit {result.returncode}; stderr tail:\n{result.stderr[-3000:]}"
    assert result.returncode == 2, context
    assert "Traceback" not in result.stderr, context
    errors = error_lines(result.stderr)
    assert len(errors) == 1, context
    assert result.stderr.strip().splitlines()[-1] == errors[0], context
    for part in expected:
        assert part in errors[0], f"{part!r} not in {errors[0]!r}"
    return errors[0]


@pytest.fixture(scope="session")
def gguf_model(smollm2_gguf) -> str:
    return f"serve.model={smollm2_gguf}"
