"""Generation speed: the quantized GGUF through llama.cpp vs transformers fp32 `generate` on the merged HF model,
same prompts, same max_new_tokens, greedy, same thread count, one prompt at a time (how a request is served),
side by side in one run. Prints completion tokens/s of each and the ratio; writes
bench/results/gguf_vs_transformers.json with the command.

    python bench/gguf_vs_transformers.py --gguf models/gguf/model-q4_k_m.gguf --hf-model models/merged/healthcare
    python bench/gguf_vs_transformers.py --gguf "$(python -c 'from stages.base.materialize import smollm2_gguf_path as p; print(p())')" \
        --hf-model /tmp/smol_base --quick

Both sides run through the project's engines (stages.inference.load_engine: GGUFEngine, HFEngine), the
code evaluate and serving use. Time counts the whole request (prompt processing + decode), so tokens/s is
what a client sees. Each repetition runs all prompts on one engine then the other (alternating which goes
first), after a warm-up; medians over repetitions are reported.
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import QUESTIONS, RESULTS_DIR, chat_messages, finish_record, run_record  # noqa: E402
from stages.fileio import write_json  # noqa: E402
from stages.inference import Generation, SamplingParams, load_engine  # noqa: E402


def timed_generation(engine, prompts: list[str], params: SamplingParams) -> tuple[list[Generation], float]:
    """One prompt per call, as a server handles single requests."""
    started = time.perf_counter()
    out = [engine.generate([prompt], params)[0] for prompt in prompts]
    return out, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--hf-model", type=Path, default=ROOT / "models" / "merged" / "healthcare")
    parser.add_argument("--threads", type=int, default=2, help="torch and llama.cpp threads (the same for both)")
    parser.add_argument("--n-prompts", type=int, default=4)
    parser.add_argument("--max-new-tokens", type=int, default=48)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 2 prompts (a smoke run)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "gguf_vs_transformers.json")
    args = parser.parse_args()
    for path, what in ((args.gguf, "GGUF file"), (args.hf_model, "HF model folder")):
        if not path.exists():
            sys.exit(f"error: {path}: {what} not found; run `make run` or pass --gguf/--hf-model")
    logging.basicConfig(level=logging.WARNING)
    repeats, n_prompts = (1, 2) if args.quick else (args.repeats, args.n_prompts)
    record = run_record()

    engines = {"llama.cpp (GGUF)": load_engine("gguf", args.gguf, threads=args.threads, n_ctx=2048),
               "transformers fp32": load_engine("hf", args.hf_model, threads=args.threads, batch_size=1)}
    conversations = [chat_messages(QUESTIONS[i % len(QUESTIONS)]) for i in range(n_prompts)]
    prompts = {name: [e.apply_chat_template(c) for c in conversations] for name, e in engines.items()}
    same_prompts = len(set(map(tuple, prompts.values()))) == 1  # both templates render the same text
    params = SamplingParams(max_new_tokens=args.max_new_tokens, temperature=0.0)
    for name, engine in engines.items():  # warm-up: allocations, kernel selection, llama.cpp graph
        engine.generate(prompts[name][:1], SamplingParams(max_new_tokens=8))

    speeds: dict[str, list[float]] = {name: [] for name in engines}
    texts: dict[str, list[str]] = {}
    order = list(engines)
    for rep in range(repeats):
        for name in order if rep % 2 == 0 else order[::-1]:
            out, seconds = timed_generation(engines[name], prompts[name], params)
            tokens = sum(g.completion_tokens for g in out)
            speeds[name].append(tokens / seconds)
            texts[name] = [g.text for g in out]
            print(f"rep {rep + 1} {name:18s} {tokens} tokens in {seconds:6.2f} s: {tokens / seconds:6.1f} tok/s",
                  flush=True)
    gguf_name, hf_name = order
    median = {name: statistics.median(v) for name, v in speeds.items()}
    ratio = median[gguf_name] / median[hf_name]
    identical = sum(a == b for a, b in zip(texts[gguf_name], texts[hf_name], strict=True))
    quantization = engines[gguf_name].info().get("quantization")
    result = {
        "name": "gguf_vs_transformers", **finish_record(record),
        "gguf": str(args.gguf), "gguf_quantization": quantization, "hf_model": str(args.hf_model),
        "threads": args.threads, "prompts": n_prompts, "max_new_tokens": args.max_new_tokens,
        "repetitions": repeats, "same_prompt_text_both_sides": same_prompts,
        "tokens_per_s": {name: round(v, 2) for name, v in median.items()},
        "per_repetition_tokens_per_s": {name: [round(x, 2) for x in v] for name, v in speeds.items()},
        "ratio_gguf_vs_transformers": round(ratio, 2),
        # Quantization changes some greedy choices; this says how often the texts still match exactly.
        "identical_texts": f"{identical}/{n_prompts}",
    }
    write_json(args.output, result)
    print(f"{gguf_name} [{quantization}] {median[gguf_name]:.1f} tok/s vs {hf_name} {median[hf_name]:.1f} tok/s: "
          f"{ratio:.2f}x (identical texts {identical}/{n_prompts}) -> {args.output}")


if __name__ == "__main__":
    main()
