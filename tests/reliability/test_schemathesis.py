"""schemathesis 4.32 against the live OpenAPI of a real `domain-llm serve` (SmolLM2 GGUF, 127.0.0.1): every
generated request must get no 5xx and a response that matches the schema (status code, content type, headers,
body), and every request the schema forbids must be rejected.

    pytest tests/reliability/test_schemathesis.py -q              # ~200 cases (examples + fuzzing phases)
    pytest tests/reliability/test_schemathesis.py -q -m slow      # >= 1000 cases (+ the coverage phase)

The same run by hand, against a server you started:
    st run http://127.0.0.1:8000/openapi.json -H 'Authorization: Bearer KEY' \\
        --exclude-checks positive_data_acceptance -n 60 --seed 2 -w 1

Why `positive_data_acceptance` is off: two documented 422s depend on more than one field, which JSON Schema
cannot say - the chat messages' *total* length over serve.max_prompt_chars, and a prompt over the context window
(serve.n_ctx). Every other check schemathesis has is on, including auth (an API key and an admin token are set,
so /api/v1/shutdown answers 401 to the fuzzer and is never triggered).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from tests.serving.conftest import log_tail, start_server_process, wait_for

SCHEMATHESIS = Path(sys.executable).with_name("st")
API_KEY, ADMIN_TOKEN = "reliability-api-key", "reliability-admin-token"
# Small limits keep each generated request cheap (8 new tokens, <= 300-char prompts, 2-prompt batches) while
# every route and every limit is still exercised; a deep queue keeps 429s out of a one-worker run.
SERVE_SETTINGS = ("serve.n_ctx=512", "serve.max_tokens_limit=8", "serve.max_prompt_chars=300",
                  "serve.max_batch_size=2", "serve.max_documents=4", "serve.max_document_chars=200",
                  "serve.queue_size=64", "serve.request_timeout_s=60", "serve.reranker=null",
                  "serve.log_requests=false", "serve.embeddings=true")
# health, model/info, generate, generate/batch, rerank, ask, shutdown, completions, chat, models, rerank,
# embeddings, metrics, the adapters list, load and unload (403 here: no admin token), and feedback
OPERATIONS = 20


@pytest.fixture(scope="module")
def fuzzed_server(gguf_model, tmp_path_factory):
    from stages.config import compose
    from stages.index.main import main as build_index

    root = tmp_path_factory.mktemp("fuzz_index")  # /api/v1/ask answers from the healthcare fact sheets
    build_index(compose(["domains=[healthcare]", f"index.docs_dir={root / 'no-docs'}", f"paths.index={root / 'index'}",
                         f"paths.metrics={root}"]))
    running = start_server_process(gguf_model, *SERVE_SETTINGS, f"serve.index={root / 'index'}",
                                   f"serve.feedback_dir={root / 'feedback'}", "serve.feedback_max_chars=300",
                                   env={"DOMAIN_LLM_API_KEY": API_KEY, "DOMAIN_LLM_ADMIN_TOKEN": ADMIN_TOKEN})
    # The reranker (bundled MiniLM fallback) loads in the background; rerank cases must not meet a 503.
    wait_for(lambda: health(running.url)["reranker"] == "ready", timeout_s=120, interval_s=0.5)
    yield running
    running.stop()


def health(url: str) -> dict:
    return httpx.get(f"{url}/api/v1/health", timeout=10).json()


def run_schemathesis(url: str, workdir: Path, phases: str, max_examples: int, seed: int) -> tuple[dict, str]:
    """`st run` in a subprocess; returns its JSON report and console output."""
    report_path = workdir / "schemathesis.json"
    command = [str(SCHEMATHESIS), "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {API_KEY}",
               "--exclude-checks", "positive_data_acceptance", "--phases", phases, "-n", str(max_examples),
               "--seed", str(seed), "-w", "1", "--request-timeout", "60", "--report", "json",
               "--report-json-path", str(report_path)]
    # cwd: schemathesis keeps a .schemathesis/ cache in the working directory; keep it out of the repo.
    result = subprocess.run(command, cwd=workdir, capture_output=True, text=True, timeout=900)
    assert report_path.is_file(), f"no report (exit {result.returncode}):\n{result.stdout[-4000:]}{result.stderr}"
    return json.loads(report_path.read_text()), result.stdout


def check_run(server, workdir: Path, phases: str, max_examples: int, seed: int, min_cases: int) -> dict:
    before = health(server.url)["queue"]
    report, console = run_schemathesis(server.url, workdir, phases, max_examples, seed)
    after = health(server.url)["queue"]
    cases = report["test_cases"]
    summary = {"cases": cases["generated"], "failures": len(report["failures"]), "errors": len(report["errors"]),
               "generations": after["completed"] - before["completed"], "seconds": round(report["running_time"])}
    print(f"\nschemathesis {phases} -n {max_examples} --seed {seed}: {summary}")
    tail = console[-6000:]
    assert report["failures"] == [] and cases["with_failures"] == 0, tail
    assert report["errors"] == [] and cases["errored"] == 0, tail
    assert report["complete"] and report["exit_code"] == 0, tail
    assert report["operations"]["tested"] == OPERATIONS, report["operations"]
    assert cases["generated"] >= min_cases, summary
    # Not vacuous: many cases were valid and reached the model, and no generation raised inside the server.
    assert summary["generations"] >= min_cases // 10 and after["failed"] == before["failed"], (before, after)
    assert server.process.poll() is None and "Traceback" not in log_tail(server.process, 200_000)
    return summary


def test_schemathesis_examples_and_fuzzing(fuzzed_server, tmp_path):
    check_run(fuzzed_server, tmp_path, "examples,fuzzing", max_examples=30, seed=1, min_cases=150)


@pytest.mark.slow
def test_schemathesis_over_1000_cases_all_phases(fuzzed_server, tmp_path):
    check_run(fuzzed_server, tmp_path, "examples,coverage,fuzzing", max_examples=60, seed=2, min_cases=1000)
