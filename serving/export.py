"""`domain-llm export`: the command lines that serve the pipeline's domains on another engine, from the same
manifests our server reads, with our API in front (serve.engine=openai_upstream; docs/deploy.md).

    domain-llm export llama-server                      # the q4_k_m base + every domain's adapter GGUF
    domain-llm export vllm --models-dir /models         # the HF base + every domain's PEFT adapter (GPU)
    domain-llm export vllm --json                       # the same as JSON (argv, lora_modules, our serve overrides)

Domains are the adapters adapter@<domain> published for the served base (models/adapters/<d>/manifest.json naming
its sha256), as `domain-llm serve` finds them. `--models-dir` is where the models folder is mounted on the engine's
machine (a container volume); paths are rewritten under it. What vLLM is given is untested on this project's
CPU-only machines (docs/deploy.md says so).
"""

from __future__ import annotations

import json
import shlex
from pathlib import Path

from omegaconf import DictConfig

from serving.domains import DOMAIN_PREFIX, published_adapters
from stages.errors import StageError

BASE_ID = "base"  # the base model's id on the engine: what our API's serve.upstream_model names


def on_engine(path: Path, models: Path, models_dir: str | None) -> str:
    """`path` as the engine sees it: under --models-dir when given (the models folder mounted there)."""
    if models_dir is None:
        return str(path)
    try:
        return str(Path(models_dir) / path.relative_to(models))
    except ValueError:
        raise StageError(f"{path} is not under {models}; --models-dir rewrites paths of the models folder only") from None


def lora_rank(peft_dir: Path) -> int:
    config = peft_dir / "adapter_config.json"
    try:
        return int(json.loads(config.read_text(encoding="utf-8"))["r"])
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StageError(f"{config}: no PEFT adapter here ({e}); run `dvc repro train@{peft_dir.name}`") from None


def llama_server_plan(root: Path, cfg: DictConfig, models_dir: str | None, port: int, parallel: int) -> dict:
    models, gguf = root / "models", root / cfg.paths.gguf / "model-q4_k_m.gguf"
    adapters = published_adapters(root / cfg.paths.adapter_gguf, gguf)
    if not gguf.is_file():
        raise StageError(f"{gguf}: no base GGUF; run `dvc repro` (quantize) or `dvc pull`")
    argv = ["llama-server", "-m", on_engine(gguf, models, models_dir), "--host", "0.0.0.0", "--port", str(port),
            "-np", str(parallel), "-c", str(2048 * parallel)]
    for path in adapters.values():
        argv += ["--lora", on_engine(path, models, models_dir)]
    if adapters:
        argv.append("--lora-init-without-apply")  # no adapter on base requests; each request names its own
    return {"engine": "llama-server", "domains": list(adapters), "argv": argv,
            "serve": ["serve.engine=openai_upstream", f"serve.upstream_url=http://<llama-server>:{port}",
                      "serve.upstream_adapters=lora"]}


def vllm_plan(root: Path, cfg: DictConfig, models_dir: str | None, port: int) -> dict:
    models, gguf = root / "models", root / cfg.paths.gguf / "model-q4_k_m.gguf"
    base = root / cfg.paths.base_model
    if not (base / "config.json").is_file():
        raise StageError(f"{base}: no HF base model; run `dvc repro base` or `dvc pull`")
    domains = list(published_adapters(root / cfg.paths.adapter_gguf, gguf))
    modules, ranks = [], []
    for domain in domains:
        peft_dir = root / cfg.paths.adapter / domain
        ranks.append(lora_rank(peft_dir))
        modules.append({"name": DOMAIN_PREFIX + domain, "path": on_engine(peft_dir, models, models_dir),
                        "base_model_name": BASE_ID})
    argv = ["vllm", "serve", on_engine(base, models, models_dir), "--served-model-name", BASE_ID,
            "--host", "0.0.0.0", "--port", str(port)]
    if modules:
        argv += ["--enable-lora", "--max-lora-rank", str(max(ranks)), "--max-loras", str(len(modules)),
                 "--lora-modules", *(json.dumps(m) for m in modules)]
    return {"engine": "vllm", "domains": domains, "argv": argv, "lora_modules": modules,
            "serve": ["serve.engine=openai_upstream", f"serve.upstream_url=http://<vllm>:{port}",
                      f"serve.upstream_model={BASE_ID}", "serve.upstream_adapters=model"]}


def main(cfg: DictConfig, root: Path, engine: str, models_dir: str | None, as_json: bool, port: int,
         parallel: int) -> int:
    plan = (vllm_plan(root, cfg, models_dir, port) if engine == "vllm"
            else llama_server_plan(root, cfg, models_dir, port, parallel))
    if as_json:
        print(json.dumps(plan, indent=2))
        return 0
    print(f"# {plan['engine']}: the base model + {len(plan['domains'])} domain adapters ({', '.join(plan['domains']) or 'none'})")
    print(shlex.join(plan["argv"]))
    print("# our API in front of it (the same models folder mounted, for the manifests and routing examples):")
    print(shlex.join(["domain-llm", "serve", *plan["serve"]]))
    return 0
