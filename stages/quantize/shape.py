"""The hyper-parameters of an HF decoder-only checkpoint that the GGUF conversion needs, read from config.json.

    shape = ModelShape.from_config(config, model_dir / "config.json")
    shape.n_head, shape.head_dim, shape.rope_type

Its own module so the one-way dependency holds: convert.py (the shared pipeline) imports families.py (the
per-family pieces), and both import this; families.py never imports convert.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from stages.errors import StageError


@dataclass
class ModelShape:
    """The hyper-parameters llama.cpp needs, read from config.json (the raw config is kept for the family's own
    keys)."""
    n_layers: int
    n_embd: int
    n_ff: int
    n_head: int
    n_head_kv: int
    head_dim: int
    n_vocab: int
    n_ctx: int
    rms_eps: float
    rope_theta: float
    rope: dict  # the full-attention rope parameters (rope_type, factor, ...)
    tied: bool
    config: dict
    explicit_head_dim: bool = False
    rope_theta_swa: float | None = None  # sliding-window layers' own rope base (Gemma 3)

    @property
    def rope_type(self) -> str:
        return str(self.rope.get("rope_type", self.rope.get("type", "default")))

    @classmethod
    def from_config(cls, config: dict, config_path: Path) -> ModelShape:
        try:
            n_head = int(config["num_attention_heads"])
            n_embd = int(config["hidden_size"])
            # transformers 5 keeps rope settings under rope_parameters (per attention kind for Gemma 3:
            # full_attention / sliding_attention); 4.x used rope_theta / rope_scaling / rope_local_base_freq.
            rope = dict(config.get("rope_parameters") or config.get("rope_scaling") or {})
            swa = None
            if isinstance(rope.get("full_attention"), dict):
                swa = (rope.get("sliding_attention") or {}).get("rope_theta")
                rope = dict(rope["full_attention"])
            theta = rope.get("rope_theta", config.get("rope_theta", 10000.0))
            swa = swa or config.get("rope_local_base_freq")
            return cls(
                n_layers=int(config["num_hidden_layers"]), n_embd=n_embd, n_ff=int(config["intermediate_size"]),
                n_head=n_head, n_head_kv=int(config.get("num_key_value_heads") or n_head),
                head_dim=int(config.get("head_dim") or n_embd // n_head), n_vocab=int(config["vocab_size"]),
                n_ctx=int(config.get("max_position_embeddings", 2048)),
                rms_eps=float(config.get("rms_norm_eps", 1e-5)), rope_theta=float(theta), rope=rope,
                tied=bool(config.get("tie_word_embeddings", False)), config=config,
                explicit_head_dim=config.get("head_dim") is not None,
                rope_theta_swa=float(swa) if swa is not None else None)
        except KeyError as e:
            raise StageError(f"{config_path}: missing field {e.args[0]!r}; is this a decoder-only LM config?") from None
