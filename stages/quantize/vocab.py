"""Write an HF tokenizer into a GGUF the way llama.cpp reads it.

Two tokenizer families cover the model families we convert:
- byte-level BPE (GPT-2 style, SmolLM2, Llama 3, Qwen): `tokenizer.ggml.model = "gpt2"`, tokens in their byte-level
  unicode spelling, merges, and a `tokenizer.ggml.pre` naming the pre-tokenizer regex llama.cpp applies;
- SentencePiece (Llama 2, Mistral, Gemma, Phi-3): `tokenizer.ggml.model = "llama"` with real piece scores, either from
  tokenizer.model (needs the optional `sentencepiece` package) or from tokenizer.json's BPE-with-byte-fallback
  form, where a token's score is minus the rank of the merge that creates it (llama.cpp merges the
  highest-scoring pair first, so this reproduces HF's merge order).

    from stages.quantize.vocab import write_vocab
    write_vocab(gguf_writer, Path("models/merged"), n_vocab=49152, tokenizer_pre="auto")
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path
from typing import Any

import gguf

from stages.errors import StageError

log = logging.getLogger(__name__)

# The Llama 3 split regex in tokenizer.json; llama.cpp calls this pre-tokenizer "llama-bpe".
LLAMA3_SPLIT = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
                r"|\s*[\r\n]+|\s+(?!\S)|\s+")
# Qwen 2/2.5/3: the same with single digits; llama.cpp calls it "qwen2".
QWEN2_SPLIT = LLAMA3_SPLIT.replace(r"\p{N}{1,3}", r"\p{N}")
BYTE_TOKEN = re.compile(r"<0x[0-9A-Fa-f]{2}>")


def read_tokenizer_files(model_dir: Path) -> tuple[dict, dict]:
    """(tokenizer.json, tokenizer_config.json) of an HF folder; either may be {} when absent."""
    def load(name: str) -> dict:
        path = model_dir / name
        if not path.is_file():
            return {}
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise StageError(f"{path}:{e.lineno}: malformed JSON ({e.msg}); re-save the tokenizer") from None
    return load("tokenizer.json"), load("tokenizer_config.json")


def detect_bpe_pre(tokenizer_json: dict) -> str | None:
    """Name llama.cpp's pre-tokenizer for a byte-level BPE from the structure of tokenizer.json.

    llama.cpp hard-codes one regex set per name; we recognise the structures we know and return None
    otherwise (the caller then asks for `quantize.tokenizer_pre`). The parity check after conversion
    catches a wrong guess.
    """
    pre = tokenizer_json.get("pre_tokenizer") or {}
    steps = pre.get("pretokenizers", []) if pre.get("type") == "Sequence" else [pre]
    kinds = [s.get("type") for s in steps]
    if kinds == ["ByteLevel"] and steps[0].get("use_regex", True):
        return "gpt-2"
    if kinds == ["Digits", "ByteLevel"] and steps[0].get("individual_digits") and steps[1].get("use_regex", True):
        return "smollm"
    if kinds == ["Split", "ByteLevel"] and not steps[1].get("use_regex", True):
        pattern = steps[0].get("pattern", {}).get("Regex")
        if pattern == LLAMA3_SPLIT:
            return "llama-bpe"
        if pattern == QWEN2_SPLIT:
            return "qwen2"
    return None


def add_bos_default(tokenizer_json: dict, tokenizer_config: dict, default: bool) -> bool:
    """Whether the tokenizer prepends BOS: tokenizer_config's flag, else its post-processor template."""
    if isinstance(tokenizer_config.get("add_bos_token"), bool):
        return tokenizer_config["add_bos_token"]
    post = tokenizer_json.get("post_processor") or {}
    processors = post.get("processors", [post]) if post.get("type") == "Sequence" else [post]
    for proc in processors:
        if proc.get("type") == "TemplateProcessing":
            single = proc.get("single", [])
            return bool(single) and "SpecialToken" in single[0]
    return default


def tokens_by_id(tokenizer_json: dict, n_vocab: int) -> list[tuple[str, gguf.TokenType]]:
    """Every id 0..n_vocab-1 with its text and type; ids the tokenizer does not use become [PADn]."""
    entries: dict[int, tuple[str, gguf.TokenType]] = {}
    model = tokenizer_json["model"]
    unk = model.get("unk_token")
    for text, idx in model["vocab"].items():
        if text == unk:
            kind = gguf.TokenType.UNKNOWN
        elif model.get("byte_fallback") and BYTE_TOKEN.fullmatch(text):
            kind = gguf.TokenType.BYTE
        else:
            kind = gguf.TokenType.NORMAL
        entries[idx] = (text, kind)
    for added in tokenizer_json.get("added_tokens", []):
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        if added["content"] == unk:
            kind = gguf.TokenType.UNKNOWN
        elif model.get("byte_fallback") and BYTE_TOKEN.fullmatch(added["content"]):
            kind = gguf.TokenType.BYTE  # byte-fallback pieces listed as added tokens are still bytes to llama.cpp
        entries[added["id"]] = (added["content"], kind)
    if entries and max(entries) >= n_vocab:
        raise StageError(f"tokenizer has token id {max(entries)} but config.json vocab_size is {n_vocab}; "
                         "resize the model's embeddings to the tokenizer (model.resize_token_embeddings)")
    return [entries.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED)) for i in range(n_vocab)]


def merge_ranks(tokenizer_json: dict) -> dict[str, int]:
    """token text -> rank of the merge that produces it (earlier merges are applied first)."""
    ranks: dict[str, int] = {}
    for rank, merge in enumerate(tokenizer_json["model"].get("merges", [])):
        left, right = merge.split(" ", 1) if isinstance(merge, str) else merge
        ranks.setdefault(left + right, rank)
    return ranks


def write_special(writer: gguf.GGUFWriter, model_dir: Path, n_vocab: int, add_bos: bool,
                  load_merges: bool, chat_template: str | None) -> None:
    """bos/eos/unk/pad ids, merges and the chat template via gguf's SpecialVocab, plus add_bos explicitly
    (transformers 5 does not save add_bos_token, and llama.cpp's default differs per tokenizer model)."""
    special = gguf.SpecialVocab(model_dir, load_merges=load_merges, n_vocab=n_vocab)
    special.add_special_token.pop("bos", None)
    special.add_special_token.setdefault("eos", False)
    if chat_template is not None:
        special.chat_template = chat_template
    special.add_to_gguf(writer, quiet=True)
    writer.add_add_bos_token(add_bos)


def write_bpe_vocab(writer: gguf.GGUFWriter, model_dir: Path, tokenizer_json: dict, tokenizer_config: dict,
                    n_vocab: int, tokenizer_pre: str, chat_template: str | None) -> str:
    pre = detect_bpe_pre(tokenizer_json) if tokenizer_pre == "auto" else tokenizer_pre
    if pre is None:
        raise StageError(f"{model_dir / 'tokenizer.json'}: unrecognised BPE pre-tokenizer "
                         f"{json.dumps(tokenizer_json.get('pre_tokenizer'))[:200]}; set quantize.tokenizer_pre to "
                         "llama.cpp's name for it (e.g. gpt-2, llama-bpe, qwen2, smollm)")
    tokens = tokens_by_id(tokenizer_json, n_vocab)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(pre)
    writer.add_token_list([text for text, _ in tokens])
    writer.add_token_types([int(kind) for _, kind in tokens])
    write_special(writer, model_dir, n_vocab, add_bos_default(tokenizer_json, tokenizer_config, False),
                  load_merges=True, chat_template=chat_template)
    return pre


def space_prefix(tokenizer_json: dict) -> bool:
    """SentencePiece-style tokenizers prepend "▁" via the normalizer (Llama 2) or Metaspace (newer)."""
    for part in ("normalizer", "pre_tokenizer"):
        node = tokenizer_json.get(part) or {}
        steps = node.get("normalizers") or node.get("pretokenizers") or [node]
        for step in steps:
            if step.get("type") == "Prepend" and step.get("prepend") == "▁":
                return True
            if step.get("type") == "Metaspace":
                return step.get("prepend_scheme", "always") != "never"
    return False


def write_llama_vocab(writer: gguf.GGUFWriter, model_dir: Path, tokenizer_json: dict, tokenizer_config: dict,
                      n_vocab: int, chat_template: str | None, spm_space_prefix: bool | None = None) -> str:
    """SentencePiece vocab: real scores from tokenizer.model when sentencepiece is installed, else derived
    from tokenizer.json merge ranks. `spm_space_prefix`: the family's "▁" prefix rule for tokenizer.model
    (Gemma: none); tokenizer.json says it itself."""
    sp_model = model_dir / "tokenizer.model"
    sp_tokens: list[tuple[bytes, float, Any]] | None = None
    if sp_model.is_file():
        try:
            sp_tokens = list(gguf.SentencePieceVocab(model_dir).all_tokens())
        except RuntimeError:
            log.info("sentencepiece not installed: reading the vocabulary from tokenizer.json instead")
    if sp_tokens is not None:
        texts = [t.decode("utf-8") for t, _, _ in sp_tokens]
        scores = [s for _, s, _ in sp_tokens]
        kinds = [int(k) for _, _, k in sp_tokens]
        texts += [f"[PAD{i}]" for i in range(len(texts), n_vocab)]
        scores += [-1000.0] * (n_vocab - len(scores))
        kinds += [int(gguf.TokenType.UNUSED)] * (n_vocab - len(kinds))
        # tokenizer.model does not mark the chat tokens (<start_of_turn>, ...) special; tokenizer_config does.
        for idx, added in (tokenizer_config.get("added_tokens_decoder") or {}).items():
            if int(idx) < n_vocab and isinstance(added, dict) and "content" in added:
                texts[int(idx)] = added["content"]
                kinds[int(idx)] = int(gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED)
        add_prefix = True if spm_space_prefix is None else spm_space_prefix
    else:
        if not tokenizer_json:
            raise StageError(f"{model_dir}: no tokenizer.json (and tokenizer.model needs `pip install "
                             "sentencepiece`); save the tokenizer with save_pretrained")
        tokens = tokens_by_id(tokenizer_json, n_vocab)
        ranks = merge_ranks(tokenizer_json)
        texts = [text for text, _ in tokens]
        kinds = [int(kind) for _, kind in tokens]
        scores = [-float(ranks[t] + 1) if t in ranks else (0.0 if k == gguf.TokenType.NORMAL else -1000.0)
                  for t, k in zip(texts, kinds, strict=True)]
        add_prefix = space_prefix(tokenizer_json)
    writer.add_tokenizer_model("llama")
    writer.add_tokenizer_pre("default")
    writer.add_token_list(texts)
    writer.add_token_scores(scores)
    writer.add_token_types(kinds)
    writer.add_add_space_prefix(add_prefix)
    write_special(writer, model_dir, n_vocab, add_bos_default(tokenizer_json, tokenizer_config, True),
                  load_merges=False, chat_template=chat_template)
    return "llama"


def tokenizer_family(tokenizer_json: dict, model_dir: Path) -> str:
    """"bpe" (byte-level), "llama" (SentencePiece / BPE with byte fallback) or raise."""
    model = tokenizer_json.get("model", {})
    if model.get("type") == "BPE" and not model.get("byte_fallback"):
        return "bpe"
    if model.get("type") == "BPE" or (model_dir / "tokenizer.model").is_file():
        return "llama"
    raise StageError(f"{model_dir}: tokenizer type {model.get('type')!r} is not supported by the built-in "
                     "converter (BPE or SentencePiece only); set quantize.llama_cpp_path to a llama.cpp checkout")


def write_vocab(writer: gguf.GGUFWriter, model_dir: Path, n_vocab: int, tokenizer_pre: str = "auto",
                chat_template: str | None = None, spm_space_prefix: bool | None = None) -> str:
    """Write the tokenizer of `model_dir` into `writer`; returns the pre-tokenizer (or "llama")."""
    tokenizer_json, tokenizer_config = read_tokenizer_files(model_dir)
    if not tokenizer_json and not (model_dir / "tokenizer.model").is_file():
        raise StageError(f"{model_dir}: no tokenizer.json or tokenizer.model; save the tokenizer next to the "
                         "model (tokenizer.save_pretrained)")
    if tokenizer_family(tokenizer_json, model_dir) == "bpe":
        return write_bpe_vocab(writer, model_dir, tokenizer_json, tokenizer_config, n_vocab, tokenizer_pre,
                               chat_template)
    return write_llama_vocab(writer, model_dir, tokenizer_json, tokenizer_config, n_vocab, chat_template,
                             spm_space_prefix)
