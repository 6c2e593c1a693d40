"""`domain-llm export`: the engine command lines come from the published manifests (tests/deploy/published.py);
tests/deploy/test_replicas.py starts real llama-server replicas from the llama-server one."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys

import pytest

from tests.deploy.published import REPO_ROOT, published_project


@pytest.fixture(scope="module")
def project(tiny_adapters, tiny_model_dir, tmp_path_factory):
    return published_project(tmp_path_factory.mktemp("published"), tiny_adapters, tiny_model_dir)


def export(project, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "stages.cli", "export", *args, "--params",
                           str(project / "params.yaml")], capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)


def test_vllm_gets_the_hf_base_and_each_domains_peft_adapter(project):
    result = export(project, "vllm", "--models-dir", "/models", "--json")
    assert result.returncode == 0, result.stderr
    plan = json.loads(result.stdout)
    assert plan["domains"] == ["healthcare", "legal"]
    assert plan["lora_modules"] == [{"name": f"domain-llm-{d}", "path": f"/models/adapter/{d}", "base_model_name": "base"}
                                    for d in ("healthcare", "legal")]
    argv = plan["argv"]
    assert argv[:3] == ["vllm", "serve", "/models/base"] and argv[argv.index("--max-lora-rank") + 1] == "4"
    assert "serve.upstream_adapters=model" in plan["serve"] and "serve.upstream_model=base" in plan["serve"]
    text = export(project, "vllm")
    assert text.returncode == 0 and f"vllm serve {project}/models/base" in text.stdout


def test_llama_server_gets_the_gguf_base_and_each_adapter_without_applying_them(project):
    plan = json.loads(export(project, "llama-server", "--models-dir", "/models", "--json", "--parallel", "2").stdout)
    argv = plan["argv"]
    assert argv[argv.index("-m") + 1] == "/models/gguf/model-q4_k_m.gguf" and argv[argv.index("-np") + 1] == "2"
    assert [argv[i + 1] for i, a in enumerate(argv) if a == "--lora"] == \
        ["/models/adapters/healthcare/adapter.gguf", "/models/adapters/legal/adapter.gguf"]
    assert argv[-1] == "--lora-init-without-apply"


def test_a_missing_peft_adapter_is_one_line(project, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(project, broken)
    shutil.rmtree(broken / "models" / "adapter" / "legal")
    result = export(broken, "vllm")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1
    assert "models/adapter/legal/adapter_config.json: no PEFT adapter here" in result.stderr
    assert "dvc repro train@legal" in result.stderr
