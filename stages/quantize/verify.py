"""Check a GGUF before it is published: it parses, its tensor data is all there, llama.cpp loads it, and it
generates finite logits for a few greedy tokens.

    from stages.quantize.verify import verify_gguf
    verify_gguf(Path("models/gguf/model-q4_k_m.gguf"))     # StageError on a truncated/corrupt file
"""

from __future__ import annotations

import logging
from pathlib import Path

import llama_cpp
import numpy as np

from stages.errors import StageError
from stages.inference.chat import ChatContract
from stages.inference.gguf import load_llama

log = logging.getLogger(__name__)

CHECK_PROMPT = "The capital of France is"


def greedy_tokens(llm, prompt: str, n_tokens: int) -> list[int]:
    """n greedy tokens after `prompt` (not stopping at EOS: we test the weights, not the stop rule)."""
    tokens = llm.tokenize(prompt.encode(), add_bos=True, special=True)
    out = []
    for token in llm.generate(tokens, temp=0.0, top_k=1, reset=True):
        out.append(int(token))
        if len(out) >= n_tokens:
            break
    return out


def verify_gguf(path: Path, threads: int = 0, n_tokens: int = 8) -> dict:
    """Load `path` and generate `n_tokens`; returns {"tokens", "text", "logit_spread"} or raises StageError."""
    llm = load_llama(path, threads=threads, n_ctx=128)
    try:
        tokens = greedy_tokens(llm, CHECK_PROMPT, n_tokens)
        # The last decoded position's logits from the context itself: without logits_all, llama-cpp-python no
        # longer copies logits into `llm.scores` (that array then holds uninitialised memory).
        logits = np.ctypeslib.as_array(llama_cpp.llama_get_logits_ith(llm.ctx, -1), shape=(llm.n_vocab(),)).copy()
        if len(tokens) < n_tokens or not np.isfinite(logits).all() or not logits.any():
            raise StageError(f"{path}: loads but does not generate finite logits; the file is corrupt")
        text = llm.detokenize(tokens).decode("utf-8", errors="replace")
    finally:
        llm.close()
    log.info("%s: loads and generates %r", Path(path).name, text[:60])
    return {"tokens": tokens, "text": text, "logit_spread": float(logits.max() - logits.min())}


# Strings where tokenizers usually disagree: digits after spaces, runs of spaces, newlines, accents, CJK,
# emoji, apostrophes; a chat rendered with the model's own template is added (its markers as text).
PROBE_TEXTS = (
    "Hello world", " Hello", "  42  ", "x = 3.14159 * 2", "1234567890", "a  b   c", "line1\nline2\n\n\tx",
    "don't won't I'm you're", "Café déjà vu", "naïve façade", "東京は日本の首都です", "Привет, мир!",
    "emoji 🙂🚀", "BP 120/80 mmHg, HbA1c 6.5%",
    "$1,000,000.00 (USD)", "   leading and trailing   ", "tab\tseparated\tvalues", "ALLCAPS lowercase MiXeD",
    "e-mail: someone@example.com", "https://example.com/a?b=c&d=e",
)


def check_tokenizer_parity(model_dir: Path, gguf_path: Path, extra_texts=(), limit: int = 300
                           ) -> list[tuple[str, list[int], list[int]]]:
    """Tokenize probe strings with the HF tokenizer and llama.cpp (vocab only); return the mismatches."""
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(model_dir)
    chats = []
    if hf.chat_template:
        chats.append(ChatContract.from_hf(hf).render([{"role": "system", "content": "Be brief."},
                                                      {"role": "user", "content": "Hi  42"}]))
    llm = load_llama(gguf_path, vocab_only=True)
    mismatches = []
    try:
        for text in (list(PROBE_TEXTS) + chats + list(extra_texts))[:limit]:
            hf_ids = list(hf(text)["input_ids"])
            gguf_ids = llm.tokenize(text.encode(), add_bos=True, special=True)
            if hf_ids != gguf_ids:
                mismatches.append((text, hf_ids, gguf_ids))
    finally:
        llm.close()
    return mismatches
