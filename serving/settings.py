"""Typed view of the `serve` config group (conf/serve/default.yaml) plus the few top-level keys serving reads."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError

ENGINES = ("gguf", "hf", "openai_upstream")
# Engines serving per-domain adapters: llama.cpp here, or an upstream that loaded the same files (upstream.py).
ADAPTER_ENGINES = ("gguf", "openai_upstream")
# What /api/v1/health reports; serve.require names the ones that must be ready for a 200.
COMPONENTS = ("model", "adapters", "router", "reranker", "index")
# serve.* keys holding a file or folder: relative ones resolve against the project root, never the cwd.
PATH_KEYS = ("model", "adapter", "adapter_dir", "reranker", "index", "embedding_model", "feedback_dir")
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")


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
    feedback_max_chars: int = 8000  # each text field of POST /api/v1/feedback


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
    upstream_adapters: str = "auto"  # how the upstream names a domain's adapter: auto | lora | model (upstream.py)
    model_name: str | None = None
    system_prompt: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    n_ctx: int = 2048
    parallel: int = 8
    kv_unified: bool = False
    lanes: int = 2  # engine=gguf: contexts decoding at once (stages/inference/lanes.py); conf says why
    spare_lanes: int = 6  # one-sequence lanes for adapter groups that would otherwise share a lane
    resident_adapters: int = 16  # adapters kept in llama.cpp at once (LRU); 0 = all; conf says why
    flash_attn: str = "auto"
    batch_size: int = 8
    threads: int = 0
    torch_threads: int = 1  # intra-op threads of the router, reranker and index (torch); conf says why
    embeddings: bool = True  # POST /v1/embeddings (serving/embeddings.py)
    metrics: bool = True  # GET /metrics, Prometheus text (serving/metrics.py)
    embedding_model: str | None = None  # a sentence-transformers folder; None: the bundled MiniLM
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
    repeat_penalty: float = 1.0  # default of requests that set none; conf/serve/default.yaml: 1.1
    require: list[str] | None = None  # components /health waits for; None: every enabled one
    allowed_hosts: list[str] | None = None  # Host header values accepted; None: loopback names + host
    allow_open: bool = False  # bind a non-loopback address without an API key
    ui_session_hours: float = 12.0  # lifetime of the web UI's sign-in cookie
    rerank_below_biencoder: bool = False  # serve a trained reranker that measured below its bi-encoder
    feedback_dir: str | None = "data/feedback"  # POST /api/v1/feedback appends <domain>.jsonl here; None = off
    feedback_max_file_mb: float = 64.0  # a domain's feedback file stops growing here (507)
    limits: Limits = field(default_factory=Limits)
    # The folder relative paths resolve against: the project root (the folder holding the composed config).
    root: Path = field(default_factory=Path.cwd)

    @classmethod
    def from_config(cls, cfg: DictConfig, root: str | Path | None = None) -> ServeSettings:
        """cfg is the whole composed config (cfg.serve + cfg.threads); `root` the project folder its relative
        paths mean (default: the project whose conf/ `compose` reads, see stages.config.project_root)."""
        raw = OmegaConf.to_container(cfg.serve, resolve=True)
        limit_keys = {f.name for f in fields(Limits)}
        known = {f.name for f in fields(cls)} | limit_keys
        unknown = sorted(set(raw) - known)
        if unknown:
            raise StageError(f"serve.{unknown[0]}: unknown setting; see conf/serve/default.yaml for the keys")
        limits = Limits(**{k: raw.pop(k) for k in list(raw) if k in limit_keys})
        if root is None:
            from stages.config import project_root

            root = project_root()
        settings = cls(**raw, limits=limits, threads=int(cfg.get("threads", 0) or 0), root=Path(root).resolve())
        settings.resolve_paths()
        # Secrets may come from the environment so they stay out of params.yaml and shell history.
        settings.api_key = settings.api_key or os.environ.get("DOMAIN_LLM_API_KEY") or None
        settings.admin_token = settings.admin_token or os.environ.get("DOMAIN_LLM_ADMIN_TOKEN") or None
        settings.validate()
        return settings

    def resolve(self, path: str | Path | None) -> Path | None:
        """An absolute path: relative ones against the project root (a systemd unit, a container WORKDIR or a
        notebook starts the server elsewhere, and the same config must serve the same files)."""
        if path is None or str(path) == "":
            return None
        path = Path(str(path)).expanduser()
        return path if path.is_absolute() else self.root / path

    def resolve_paths(self) -> None:
        for key in PATH_KEYS:
            value = self.resolve(getattr(self, key))
            setattr(self, key, None if value is None else str(value))
        if self.adapters is not None:
            self.adapters = {str(d): str(self.resolve(p)) for d, p in self.adapters.items()}

    def host_is_loopback(self) -> bool:
        if self.host in LOOPBACK_NAMES:
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False

    def trusted_hosts(self) -> list[str]:
        """Host header values the server answers (DNS rebinding: a page of evil.example resolving to 127.0.0.1
        must not reach this API); `serve.allowed_hosts` when set, else the loopback names plus serve.host."""
        if self.allowed_hosts is not None:
            return [str(h) for h in self.allowed_hosts]
        hosts = ["localhost", "127.0.0.1", "::1", "[::1]"]
        if self.host not in ("0.0.0.0", "::", *hosts):
            hosts.append(self.host)
        return hosts

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
        if self.lanes < 1 or self.spare_lanes < 0:
            raise StageError(f"serve.lanes={self.lanes}, serve.spare_lanes={self.spare_lanes}: lanes must be >= 1 "
                             "and spare_lanes >= 0")
        if self.resident_adapters < 0:
            raise StageError(f"serve.resident_adapters={self.resident_adapters}: use 0 (all) or more")
        if self.torch_threads < 1:
            raise StageError(f"serve.torch_threads={self.torch_threads}: must be >= 1")
        if not 0 < self.repeat_penalty <= 2:
            raise StageError(f"serve.repeat_penalty={self.repeat_penalty}: use a value in (0, 2]; 1 = off")
        if not 1 <= self.ask_top_k <= 10:
            raise StageError(f"serve.ask_top_k={self.ask_top_k}: use 1..10 passages")
        if self.queue_size < 1:
            raise StageError(f"serve.queue_size={self.queue_size}: must be >= 1")
        if self.request_timeout_s <= 0:
            raise StageError(f"serve.request_timeout_s={self.request_timeout_s}: must be > 0")
        unknown = sorted(set(self.require or ()) - set(COMPONENTS))
        if unknown:
            raise StageError(f"serve.require: unknown component {unknown[0]!r}; use any of {', '.join(COMPONENTS)}")
        if self.feedback_max_file_mb <= 0 or self.limits.feedback_max_chars < 1:
            raise StageError(f"serve.feedback_max_file_mb={self.feedback_max_file_mb}, serve.feedback_max_chars="
                             f"{self.limits.feedback_max_chars}: both must be > 0")
        if self.ui_session_hours <= 0:
            raise StageError(f"serve.ui_session_hours={self.ui_session_hours}: must be > 0")
        if self.allowed_hosts is not None and not self.allowed_hosts:
            raise StageError("serve.allowed_hosts is empty: list the host names clients use (or null for "
                             "the loopback names), e.g. serve.allowed_hosts=[api.example.com]")

    def check_exposure(self) -> None:
        """Refuse to listen beyond this machine without an API key (every endpoint would be open to the
        network), unless the operator says so."""
        if not self.host_is_loopback() and not self.api_key and not self.allow_open:
            raise StageError(f"serve.host={self.host} listens beyond this machine with no API key: set "
                             "serve.api_key (or DOMAIN_LLM_API_KEY), or serve.allow_open=true to serve it open")
