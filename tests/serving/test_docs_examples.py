"""Every example in docs/serving.md runs as written against a real server started by the doc's own start
command; only the host/port (127.0.0.1:8000) and the model file are substituted."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys

import httpx
import pytest

from tests.serving.conftest import REPO_ROOT, start_server_process, wait_for

DOC = REPO_ROOT / "docs" / "serving.md"
DOC_ADDRESS = "127.0.0.1:8000"


def code_blocks(language: str) -> list[str]:
    return [m.group(1) for m in re.finditer(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)]


def start_command() -> list[str]:
    [command] = [b for b in code_blocks("bash") if b.startswith("domain-llm serve")]
    words = shlex.split(command)
    assert words[:2] == ["domain-llm", "serve"]
    return words[2:]


@pytest.fixture(scope="module")
def fact_sheet_index(tmp_path_factory):
    """The index stage's default output (the healthcare fact sheets) for the /api/v1/ask example."""
    from stages.config import compose
    from stages.index.main import main

    root = tmp_path_factory.mktemp("doc_index")
    main(compose(["domains=[healthcare]", f"index.docs_dir={root / 'no-docs'}", f"paths.index={root / 'index'}", f"paths.metrics={root}"]))
    return root / "index"


@pytest.fixture(scope="module")
def doc_server(smollm2_gguf, fact_sheet_index, tmp_path_factory):
    overrides = []
    for override in start_command():
        key = override.split("=", 1)[0]
        if key in ("serve.model", "serve.port"):
            continue  # the test's model file and a free port instead
        overrides.append(override)
    assert overrides == [] or all("=" in o for o in overrides)
    # serve.embeddings as the default config has it (the test defaults turn it off)
    # feedback in a folder of the test's, not the checkout's data/feedback
    running = start_server_process(f"serve.model={smollm2_gguf}", f"serve.index={fact_sheet_index}",
                                   "serve.embeddings=true", f"serve.feedback_dir={tmp_path_factory.mktemp('feedback')}",
                                   *overrides)
    wait_for(lambda: httpx.get(f"{running.url}/api/v1/model/info").json()["reranker"]["state"] == "ready",
             timeout_s=120, interval_s=0.5)
    yield running
    running.stop()


def test_the_doc_has_the_examples_the_readme_promises():
    curls = [b for b in code_blocks("bash") if "curl" in b]
    assert len(curls) >= 6 and len(code_blocks("python")) >= 3
    assert any("from openai import OpenAI" in b for b in code_blocks("python"))
    assert "serve.port=8000" in " ".join(start_command())


@pytest.mark.parametrize("index", range(len([b for b in code_blocks("bash") if "curl" in b])))
def test_curl_example(doc_server, index):
    block = [b for b in code_blocks("bash") if "curl" in b][index]
    address = doc_server.url.removeprefix("http://")
    result = subprocess.run(["bash", "-c", "set -eo pipefail\n" + block.replace(DOC_ADDRESS, address)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    out = result.stdout.strip()
    if '"stream": true' in block:
        assert out.endswith("data: [DONE]") and '"delta"' in out
    else:
        assert isinstance(json.loads(out), dict)


@pytest.mark.parametrize("index", range(len(code_blocks("python"))))
def test_python_example(doc_server, index):
    block = code_blocks("python")[index]
    address = doc_server.url.removeprefix("http://")
    result = subprocess.run([sys.executable, "-c", block.replace(DOC_ADDRESS, address)], capture_output=True,
                            text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip()


def test_readme_serving_examples_are_the_tested_ones():
    """The README's serve section shows a subset of docs/serving.md's blocks, verbatim, so the runs above
    cover the README too."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Serve\n", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```(bash|python)\n(.*?)```", section, flags=re.S)
    assert len(blocks) >= 4
    for language, block in blocks:
        assert block in code_blocks(language), block[:80]
