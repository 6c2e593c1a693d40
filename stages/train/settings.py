"""Typed views of `cfg.train` (conf/train/*.yaml): small dataclasses the train modules take instead of a DictConfig.

    from stages.train.settings import TrainSettings
    settings = TrainSettings.from_config(cfg)      # cfg = the whole composed config
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError

MODES = ("auto", "lora", "qlora")


@dataclass
class LoraSettings:
    r: int = 16
    alpha: int = 32
    dropout: float = 0.05
    bias: str = "none"
    # Module name suffixes (q_proj, ...) or the string "all-linear".
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"])


@dataclass
class QuantSettings:
    bits: int = 4
    quant_type: str = "nf4"
    double_quant: bool = True
    compute_dtype: str = "auto"


@dataclass
class TrainSettings:
    mode: str = "auto"
    lora: LoraSettings = field(default_factory=LoraSettings)
    quantization: QuantSettings = field(default_factory=QuantSettings)
    epochs: float = 1.0
    max_steps: int = -1
    batch_size: int = 8
    grad_accum: int = 1
    lr: float = 2e-4
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    warmup_ratio: float = 0.03
    scheduler: str = "cosine"
    optimizer: str = "auto"
    gradient_checkpointing: bool = False
    cpu_bf16: bool | str = "auto"  # bf16 autocast on CPU: auto = where the CPU has native bf16 (avx512_bf16, amx)
    max_seq_length: int = 256
    no_system_prompt_share: float = 0.0  # share of plain training chats trained without their system prompt
    group_by_length: bool = True
    logging_steps: int = 5
    eval_steps: int = 20
    save_steps: int = 20
    save_total_limit: int = 2
    checkpoint_dir: str = "models/checkpoints"
    live_dir: str = "metrics/train_live"
    launcher: str = "python"
    num_processes: int = 1
    accelerate_config: str | None = None
    seed: int = 42
    threads: int = 0
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, cfg: DictConfig) -> TrainSettings:
        """Build from the whole composed config; `train.lora.target_modules: null` means `model.target_modules`."""
        train: dict[str, Any] = OmegaConf.to_container(cfg.train, resolve=True)  # type: ignore[assignment]
        lora = dict(train.pop("lora", {}) or {})
        if lora.get("target_modules") is None:
            targets = cfg.model.get("target_modules") or ["q_proj", "k_proj", "v_proj", "o_proj"]
            lora["target_modules"] = targets if isinstance(targets, str) else list(targets)  # "all-linear" stays
        quant = dict(train.pop("quantization", {}) or {})
        train_threads = train.pop("threads", None)
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(train) - known)
        if unknown:
            raise StageError(f"train.{unknown[0]}: unknown key in conf/train; known keys: {', '.join(sorted(known))}")
        settings = cls(lora=LoraSettings(**lora), quantization=QuantSettings(**quant), **train)
        settings.seed = int(cfg.get("seed", settings.seed))
        # train.threads (when set) wins over the pipeline-wide `threads`: training is the one stage where the
        # thread count decided minutes vs. tens of minutes on the shared 2-core box.
        settings.threads = int(train_threads if train_threads is not None else cfg.get("threads", settings.threads))
        settings.trust_remote_code = bool(cfg.model.get("trust_remote_code", False))
        settings.validate()
        return settings

    def validate(self) -> None:
        if self.mode not in MODES:
            raise StageError(f"train.mode={self.mode!r}: use one of {', '.join(MODES)}")
        if self.launcher not in ("python", "accelerate"):
            raise StageError(f"train.launcher={self.launcher!r}: use python or accelerate")
        if self.quantization.bits not in (4, 8):
            raise StageError(f"train.quantization.bits={self.quantization.bits}: use 4 or 8")
        if self.quantization.quant_type not in ("nf4", "fp4"):
            raise StageError(f"train.quantization.quant_type={self.quantization.quant_type!r}: use nf4 or fp4")
        for name in ("batch_size", "grad_accum", "max_seq_length", "logging_steps", "eval_steps", "save_steps",
                     "num_processes"):
            if int(getattr(self, name)) < 1:
                raise StageError(f"train.{name}={getattr(self, name)}: must be >= 1")
        if self.cpu_bf16 not in (True, False, "auto"):
            raise StageError(f"train.cpu_bf16={self.cpu_bf16!r}: use auto, true or false")
        if not 0 <= self.no_system_prompt_share <= 1:
            raise StageError(f"train.no_system_prompt_share={self.no_system_prompt_share}: use a share in 0..1")
        if self.max_steps <= 0 and self.epochs <= 0:
            raise StageError("train.epochs and train.max_steps are both <= 0: set one of them")
        self.validate_trainer_names()

    def bf16_on_cpu(self) -> bool:
        return native_cpu_bf16() if self.cpu_bf16 == "auto" else bool(self.cpu_bf16)

    def validate_trainer_names(self) -> None:
        """Check scheduler/optimizer against transformers' own enums, so a typo is one line, not a traceback
        from deep inside TrainingArguments (imported here, late: it costs seconds)."""
        from transformers.trainer_utils import SchedulerType
        from transformers.training_args import OptimizerNames

        schedulers = [s.value for s in SchedulerType]
        if self.scheduler not in schedulers:
            raise StageError(f"train.scheduler={self.scheduler!r}: use one of {', '.join(schedulers)}")
        optimizers = ["auto", *(o.value for o in OptimizerNames)]
        if self.optimizer not in optimizers:
            raise StageError(f"train.optimizer={self.optimizer!r}: use one of {', '.join(optimizers)}")

    def resolved_mode(self, on_cuda: bool) -> str:
        """`auto` is QLoRA (4-bit base, bf16 compute) on CUDA and plain LoRA in fp32 on CPU."""
        if self.mode == "auto":
            return "qlora" if on_cuda else "lora"
        return self.mode

    def fingerprint_fields(self) -> dict:
        """Everything that changes the trained weights; logging/saving cadence and launch details do not."""
        data = asdict(self)
        for key in ("logging_steps", "eval_steps", "save_steps", "save_total_limit", "checkpoint_dir", "live_dir",
                    "launcher", "accelerate_config", "threads"):
            data.pop(key)
        return data


def native_cpu_bf16() -> bool:
    """Whether this CPU computes bf16 natively (AVX512-BF16 or AMX). There, bf16 autocast trained SmolLM2 with
    LoRA at 377 vs 225 tok/s in fp32 (2 threads); on an AVX2-only CPU bf16 is emulated and 10-15x slower."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags
