"""Size, quality and speed of each GGUF against the unquantized (f16) reference, measured side by side.

Quality is scored on the test split: each record's reference answer given its prompt (the chat template
applied to the messages before the answer). Per file:
  size_mb, compression_ratio and size_reduction_pct vs f16, perplexity of the answers, delta_ppl_pct vs f16,
  kl_divergence (mean over answer tokens of KL(f16 || quant)), top1_agreement (argmax equal to f16's),
  prompt_tokens_per_s and decode_tokens_per_s (llama.cpp's own timings, fixed threads), load_s.

    from stages.quantize.benchmark import benchmark_files, BenchmarkArgs
    metrics = benchmark_files(Path("model-f16.gguf"), {"q4_k_m": Path("model-q4_k_m.gguf")}, examples, BenchmarkArgs())
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from stages.quantize.verify import load_gguf

log = logging.getLogger(__name__)


@dataclass
class BenchmarkArgs:
    """conf/quantize/default.yaml `benchmark`."""
    max_examples: int = 40
    n_ctx: int = 512
    decode_tokens: int = 64
    threads: int = 0


@dataclass
class ScoredExample:
    """Token ids of a prompt and its reference answer (answer ends with the model's EOS)."""
    prompt: list[int]
    answer: list[int]


def render_prompt(llm, messages: list[dict]) -> str:
    """The GGUF's own chat template applied to `messages` with the assistant turn opened."""
    from llama_cpp.llama_chat_format import Jinja2ChatFormatter

    template = llm.metadata.get("tokenizer.chat_template")
    if template is None:
        return "".join(f"{m['role']}: {m['content']}\n" for m in messages) + "assistant: "
    token = llm._model.token_get_text
    formatter = Jinja2ChatFormatter(template, eos_token=token(llm.token_eos()), bos_token=token(llm.token_bos()))
    return formatter(messages=messages).prompt


def tokenize_examples(llm, records: list[dict], max_examples: int, n_ctx: int) -> list[ScoredExample]:
    """Prompt/answer token ids for the first `max_examples` records that fit in `n_ctx`
    (add_bos=True means "as the GGUF's tokenizer.ggml.add_bos_token says")."""
    examples = []
    for record in records:
        messages = record["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            continue
        prompt = llm.tokenize(render_prompt(llm, messages[:-1]).encode(), add_bos=True, special=True)
        answer = llm.tokenize(messages[-1]["content"].encode(), add_bos=False, special=False)
        answer = (answer + [llm.token_eos()])[: max(n_ctx - len(prompt), 0)]
        if len(prompt) < 1 or len(answer) < 1:
            continue
        examples.append(ScoredExample(prompt, answer))
        if len(examples) >= max_examples:
            break
    return examples


def answer_log_probs(llm, example: ScoredExample) -> np.ndarray:
    """log-softmax over the vocabulary at each answer position: (n_answer, n_vocab), float64."""
    tokens = example.prompt + example.answer
    llm.reset()
    llm.eval(tokens)
    start = len(example.prompt) - 1  # logits at position i predict token i + 1
    logits = np.asarray(llm.scores[start: start + len(example.answer)], dtype=np.float64)
    logits -= logits.max(axis=1, keepdims=True)
    return logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))


def compare_quality(ref_llm, quant_llm, examples: list[ScoredExample]) -> dict:
    """Perplexity of both models on the answers, KL(ref || quant) and top-1 agreement per answer token."""
    nll_ref = nll_quant = kl_sum = 0.0
    agree = n_tokens = 0
    for example in examples:
        ref = answer_log_probs(ref_llm, example)
        quant = answer_log_probs(quant_llm, example) if quant_llm is not ref_llm else ref
        idx = np.arange(len(example.answer))
        nll_ref -= ref[idx, example.answer].sum()
        nll_quant -= quant[idx, example.answer].sum()
        kl_sum += float((np.exp(ref) * (ref - quant)).sum())
        agree += int((ref.argmax(axis=1) == quant.argmax(axis=1)).sum())
        n_tokens += len(example.answer)
    n = max(n_tokens, 1)
    return {"ppl_ref": math.exp(nll_ref / n), "ppl": math.exp(nll_quant / n), "kl_divergence": kl_sum / n,
            "top1_agreement": agree / n, "tokens_scored": n_tokens}


def measure_speed(path: Path, prompt: list[int], args: BenchmarkArgs) -> dict:
    """Load time, and prompt/decode throughput from llama.cpp's perf counters (not Python wall time)."""
    started = time.perf_counter()
    llm = load_gguf(path, threads=args.threads, n_ctx=args.n_ctx)
    load_s = time.perf_counter() - started
    try:
        prompt = prompt[: max(args.n_ctx - args.decode_tokens - 1, 1)]
        # Warm-up: the first decode allocates compute buffers; keep that out of the throughput numbers.
        llm.eval(prompt[:8])
        llm.reset()
        llama_cpp.llama_perf_context_reset(llm.ctx)
        generated = 0
        for _ in llm.generate(prompt, temp=0.0, top_k=1, reset=True):
            generated += 1
            if generated >= args.decode_tokens:
                break
        perf = llama_cpp.llama_perf_context(llm.ctx)
    finally:
        llm.close()
    return {
        "load_s": round(load_s, 3),
        "prompt_tokens_per_s": round(perf.n_p_eval / (perf.t_p_eval_ms / 1e3), 1) if perf.t_p_eval_ms else None,
        "decode_tokens_per_s": round(perf.n_eval / (perf.t_eval_ms / 1e3), 1) if perf.t_eval_ms else None,
    }


def benchmark_files(reference: Path, quantized: dict[str, Path], records: list[dict],
                    args: BenchmarkArgs, reference_type: str = "f16") -> dict[str, dict]:
    """{type: metrics} for the reference and every quantized file (flat numbers DVC can diff)."""
    ref_llm = load_gguf(reference, threads=args.threads, n_ctx=args.n_ctx, logits_all=True)
    try:
        examples = tokenize_examples(ref_llm, records, args.max_examples, args.n_ctx)
        if not examples:
            log.warning("no test examples with an assistant answer fit in n_ctx=%d: quality not measured",
                        args.n_ctx)
        ref_size = reference.stat().st_size
        files = {reference_type: reference, **quantized}
        results: dict[str, dict] = {}
        for name, path in files.items():
            size = path.stat().st_size
            row = {"size_mb": round(size / 1e6, 2), "compression_ratio": round(ref_size / size, 3),
                   "size_reduction_pct": round(100 * (1 - size / ref_size), 2)}
            if examples:
                quant_llm = ref_llm if path == reference else load_gguf(path, threads=args.threads,
                                                                        n_ctx=args.n_ctx, logits_all=True)
                try:
                    quality = compare_quality(ref_llm, quant_llm, examples)
                finally:
                    if quant_llm is not ref_llm:
                        quant_llm.close()
                row.update(perplexity=round(quality["ppl"], 4),
                           delta_ppl_pct=round(100 * (quality["ppl"] / quality["ppl_ref"] - 1), 3),
                           kl_divergence=round(quality["kl_divergence"], 6),
                           top1_agreement=round(quality["top1_agreement"], 4),
                           tokens_scored=quality["tokens_scored"])
            speed_prompt = (examples[0].prompt + examples[0].answer) if examples else \
                ref_llm.tokenize(b"The patient asked about the dosage of", add_bos=False)
            row.update(measure_speed(path, speed_prompt, args))
            log.info("%s: %s", name, row)
            results[name] = row
    finally:
        ref_llm.close()
    return results
