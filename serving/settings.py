"""Typed view of the `serve` config group (conf/serve/default.yaml) plus the few top-level keys serving reads."""

from __future__ import annotations

import os
from dataclasses import dataclass, field, fields

from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError

ENGINES = ("gguf", "hf", "openai_upstream")


@dataclass
class Limits:
    """Request bounds: over them -> 422 (413 for the body size), with a message naming the field."""

    max_tokens_limit: int = 1024
    max_prompt_chars: int = 16000
    max_batch_size: int = 16
    max_batch_tokens: int = 4096
    max_documents: int = 256
    max_document_chars: int = 8000
    max_body_bytes: int = 1_048_576


@dataclass
class ServeSettings:
    engine: str = "gguf"
    model: str = "models/gguf/model-q4_k_m.gguf"
    adapter: str | None = None
    adapters: dict[str, str] | None = None  # domain -> GGUF LoRA adapter; None: those in adapter_dir
    adapter_dir: str | None = None  # where adapter@<domain> publishes (models/adapters)
    upstream_url: str | None = None
    upstream_model: str | None = None
    upstream_api_key: str | None = None
    upstream_workers: int = 8
    model_name: str | None = None
    system_prompt: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    n_ctx: int = 2048
    parallel: int = 8
    kv_unified: bool = False
    flash_attn: str = "auto"
    batch_size: int = 8
    threads: int = 0
    queue_size: int = 16
    request_timeout_s: float = 120.0
    api_key: str | None = None
    admin_token: str | None = None
    cors_origins: list[str] = field(default_factory=list)
    rerank: bool = True
    reranker: str | None = "models/reranker"
    log_requests: bool = True
    ui: bool = True
    index: str | None = "models/index"
    ask_rerank: bool = True
    ask_candidates: int = 20
    ask_top_k: int = 1  # conf/serve/default.yaml says why
    limits: Limits = field(default_factory=Limits)

    @classmethod
    def from_config(cls, cfg: DictConfig) -> ServeSettings:
        """cfg is the whole composed config (cfg.serve + cfg.threads)."""
        raw = OmegaConf.to_container(cfg.serve, resolve=True)
        limit_keys = {f.name for f in fields(Limits)}
        known = {f.name for f in fields(cls)} | limit_keys
        unknown = sorted(set(raw) - known)
        if unknown:
            raise StageError(f"serve.{unknown[0]}: unknown setting; see conf/serve/default.yaml for the keys")
        limits = Limits(**{k: raw.pop(k) for k in list(raw) if k in limit_keys})
        settings = cls(**raw, limits=limits, threads=int(cfg.get("threads", 0) or 0))
        # Secrets may come from the environment so they stay out of params.yaml and shell history.
        settings.api_key = settings.api_key or os.environ.get("DOMAIN_LLM_API_KEY") or None
        settings.admin_token = settings.admin_token or os.environ.get("DOMAIN_LLM_ADMIN_TOKEN") or None
        settings.validate()
        return settings

    def validate(self) -> None:
        if isinstance(self.flash_attn, bool):  # YAML 1.1 reads on/off as booleans
            self.flash_attn = "on" if self.flash_attn else "off"
        if self.flash_attn not in ("auto", "on", "off"):
            raise StageError(f"serve.flash_attn={self.flash_attn!r}: use auto, on or off")
        if self.engine not in ENGINES:
            raise StageError(f"serve.engine={self.engine!r}: use one of {', '.join(ENGINES)}")
        if self.engine == "openai_upstream" and not self.upstream_url:
            raise StageError("serve.upstream_url is required with serve.engine=openai_upstream "
                             "(e.g. serve.upstream_url=http://127.0.0.1:8080)")
        if self.parallel < 1:
            raise StageError(f"serve.parallel={self.parallel}: must be >= 1 (sequences decoded together)")
        if not 1 <= self.ask_top_k <= 10:
            raise StageError(f"serve.ask_top_k={self.ask_top_k}: use 1..10 passages")
        if self.queue_size < 1:
            raise StageError(f"serve.queue_size={self.queue_size}: must be >= 1")
        if self.request_timeout_s <= 0:
            raise StageError(f"serve.request_timeout_s={self.request_timeout_s}: must be > 0")
