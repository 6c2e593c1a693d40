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
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import llama_cpp
import numpy as np

from stages.inference.chat import ChatContract, llama_tokenizer
from stages.inference.gguf import continuation_log_probs, load_llama

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
    """Token ids of a prompt and its reference answer (the answer closed by the model's end-of-turn token)."""
    prompt: list[int]
    answer: list[int]


def tokenize_examples(llm, records: list[dict], max_examples: int, n_ctx: int) -> list[ScoredExample]:
    """Prompt/answer token ids for the first `max_examples` records that fit in `n_ctx`, through the GGUF's own
    chat contract: the prompt ids the engines generate from, the answer as training supervises it."""
    contract = ChatContract.from_gguf(llm)
    tokenize, plain = llama_tokenizer(llm), llama_tokenizer(llm, control=False)  # message text stays text
    examples = []
    for record in records:
        messages = record["messages"]
        if not messages or messages[-1]["role"] != "assistant":
            continue
        prompt = contract.chat_ids(messages[:-1], tokenize, plain)
        answer = contract.answer_ids(messages[-1]["content"], plain)[: max(n_ctx - len(prompt), 0)]
        if len(prompt) < 1 or len(answer) < 1:
            continue
        examples.append(ScoredExample(prompt, answer))
        if len(examples) >= max_examples:
            break
    return examples


@dataclass
class ReferenceScores:
    """The reference model's answer log-probs, computed once and compared against every quantized file.
    They live in a float32 memmap (tokens x vocab; ~200 MB for 1k tokens of a 49k vocabulary), so a large
    vocabulary spills to disk instead of memory; float16 would blur the ~1e-4 KL of q8_0."""
    log_probs: np.ndarray
    offsets: list[int]
    nll: float
    n_tokens: int


def score_reference(ref_llm, examples: list[ScoredExample], scratch: Path) -> ReferenceScores:
    n_tokens = sum(len(e.answer) for e in examples)
    log_probs = np.lib.format.open_memmap(scratch / "reference_log_probs.npy", mode="w+", dtype=np.float32,
                                          shape=(n_tokens, ref_llm.n_vocab()))
    offsets, nll, at = [], 0.0, 0
    for example in examples:
        ref = continuation_log_probs(ref_llm, example.prompt, example.answer)
        nll -= ref[np.arange(len(example.answer)), example.answer].sum()
        log_probs[at: at + len(example.answer)] = ref
        offsets.append(at)
        at += len(example.answer)
    return ReferenceScores(log_probs, offsets, nll, n_tokens)


def compare_quality(reference: ReferenceScores, quant_llm, examples: list[ScoredExample]) -> dict:
    """Perplexity on the answers, KL(reference || quant) and top-1 agreement per answer token."""
    nll = kl_sum = 0.0
    agree = 0
    for example, at in zip(examples, reference.offsets, strict=True):
        ref = np.asarray(reference.log_probs[at: at + len(example.answer)], dtype=np.float64)
        quant = continuation_log_probs(quant_llm, example.prompt, example.answer)
        nll -= quant[np.arange(len(example.answer)), example.answer].sum()
        kl_sum += float((np.exp(ref) * (ref - quant)).sum())
        agree += int((ref.argmax(axis=1) == quant.argmax(axis=1)).sum())
    n = max(reference.n_tokens, 1)
    return {"ppl_ref": math.exp(reference.nll / n), "ppl": math.exp(nll / n), "kl_divergence": max(kl_sum / n, 0.0),
            "top1_agreement": agree / n, "tokens_scored": reference.n_tokens}


def measure_speed(path: Path, prompt: list[int], args: BenchmarkArgs, lora: Path | None = None) -> dict:
    """Load time, and prompt/decode throughput from llama.cpp's perf counters (not Python wall time)."""
    started = time.perf_counter()
    llm = load_llama(path, threads=args.threads, n_ctx=args.n_ctx, lora_path=str(lora) if lora else None)
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
                    args: BenchmarkArgs, reference_type: str = "f16",
                    lora: dict[str, Path] | None = None) -> dict[str, dict]:
    """{type: metrics} for the reference and every quantized file (flat numbers DVC can diff).
    lora: {name: GGUF adapter} applied to that entry's file (an adapter on a quantized base)."""
    with tempfile.TemporaryDirectory(prefix="quantize-bench.") as scratch:
        return _benchmark_files(reference, quantized, records, args, reference_type, Path(scratch), lora or {})


def _benchmark_files(reference: Path, quantized: dict[str, Path], records: list[dict], args: BenchmarkArgs,
                     reference_type: str, scratch: Path, lora: dict[str, Path]) -> dict[str, dict]:
    ref_llm = load_llama(reference, threads=args.threads, n_ctx=args.n_ctx, logits_all=True)
    try:
        examples = tokenize_examples(ref_llm, records, args.max_examples, args.n_ctx)
        ref_scores = score_reference(ref_llm, examples, scratch) if examples else None
        speed_prompt = (examples[0].prompt + examples[0].answer) if examples else \
            ref_llm.tokenize(b"The patient asked about the dosage of", add_bos=False)
    finally:
        ref_llm.close()
    if not examples:
        log.warning("no test examples with an assistant answer fit in n_ctx=%d: quality not measured", args.n_ctx)
    ref_size = reference.stat().st_size
    results: dict[str, dict] = {}
    for name, path in {reference_type: reference, **quantized}.items():
        adapter = lora.get(name)
        size = path.stat().st_size + (adapter.stat().st_size if adapter else 0)
        row = {"size_mb": round(size / 1e6, 2), "compression_ratio": round(ref_size / size, 3),
               "size_reduction_pct": round(100 * (1 - size / ref_size), 2)}
        if ref_scores is not None and path == reference:
            ppl = math.exp(ref_scores.nll / max(ref_scores.n_tokens, 1))  # the reference against itself
            row.update(perplexity=round(ppl, 4), delta_ppl_pct=0.0, kl_divergence=0.0, top1_agreement=1.0,
                       tokens_scored=ref_scores.n_tokens)
        elif ref_scores is not None:
            quant_llm = load_llama(path, threads=args.threads, n_ctx=args.n_ctx, logits_all=True,
                                   lora_path=str(adapter) if adapter else None)
            try:
                quality = compare_quality(ref_scores, quant_llm, examples)
            finally:
                quant_llm.close()
            row.update(perplexity=round(quality["ppl"], 4),
                       delta_ppl_pct=round(100 * (quality["ppl"] / quality["ppl_ref"] - 1), 3),
                       kl_divergence=round(quality["kl_divergence"], 6),
                       top1_agreement=round(quality["top1_agreement"], 4),
                       tokens_scored=quality["tokens_scored"])
        row.update(measure_speed(path, speed_prompt, args, adapter))
        log.info("%s: %s", name, row)
        results[name] = row
    return results
