"""Evaluation generation throughput: our batched HF generation (the evaluate stage's code path) vs one prompt
at a time (the seed's loop: tokenize one prompt, `model.generate`, decode), same model, same prompts, same
greedy settings, side by side in one run. Prints the examples/s ratio (goal >= 4x) and writes
bench/results/eval_generation.json with the command.

    python bench/eval_generation.py --model /tmp/smol_base --n-prompts 16 --batch-size 16 --max-new-tokens 96 --threads 1
    python bench/eval_generation.py --model models/merged/healthcare --test-file data/processed/healthcare/test.jsonl

Both sides run on the same loaded model and thread count, after a warm-up; each repetition runs the
sequential loop then the batched path, and the medians over repetitions are reported.
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from stages.evaluate.runner import generate_timed, load_examples  # noqa: E402
from stages.inference import Generation, SamplingParams, load_engine  # noqa: E402

# Synthetic-like domain questions (the shape of data/processed/*/test.jsonl prompts) when no test file is given.
SYSTEM_PROMPTS = {
    "healthcare": "You are a careful medical information assistant. Answer clearly; this is not medical advice.",
    "legal": "You are a legal information assistant. Explain concepts precisely; this is not legal advice.",
    "finance": "You are a finance assistant. Define terms precisely and compute numeric answers exactly.",
}
QUESTIONS = {
    "healthcare": ["What are the common symptoms of {x}?", "Which specialist treats {x}?",
                   "How is {x} usually diagnosed?", "What is the first-line treatment for {x}?"],
    "legal": ["What are the elements of {x}?", "Give an example of {x}.", "How is {x} defined in contract law?",
              "What remedies exist for {x}?"],
    "finance": ["What is {x}?", "How do you calculate {x}?", "Why does {x} matter to an investor?",
                "What is the compound interest on 1000 at {n}% for 3 years?"],
}
TOPICS = {"healthcare": ["hypertension", "type 2 diabetes", "asthma", "migraine"],
          "legal": ["breach of contract", "negligence", "adverse possession", "promissory estoppel"],
          "finance": ["net present value", "a bond's yield to maturity", "the debt-to-equity ratio", "EBITDA"]}


def synthetic_conversations(n: int) -> list[list[dict]]:
    conversations = []
    domains = list(QUESTIONS)
    for i in range(n):
        domain = domains[i % len(domains)]
        template = QUESTIONS[domain][(i // len(domains)) % len(QUESTIONS[domain])]
        question = template.format(x=TOPICS[domain][i % len(TOPICS[domain])], n=3 + i % 5)
        conversations.append([{"role": "system", "content": SYSTEM_PROMPTS[domain]},
                              {"role": "user", "content": question}])
    return conversations


@torch.no_grad()
def one_at_a_time(engine, prompts: list[str], params: SamplingParams) -> tuple[list[Generation], float]:
    """The seed's loop: one prompt per `model.generate` call, no padding, greedy."""
    from transformers import GenerationConfig

    tokenizer, model = engine.tokenizer, engine.model
    config = GenerationConfig(max_new_tokens=params.max_new_tokens, do_sample=False,
                              eos_token_id=engine.eos_ids, pad_token_id=tokenizer.pad_token_id)
    out: list[Generation] = []
    t0 = time.perf_counter()
    for prompt in prompts:
        inputs = tokenizer(prompt, return_tensors="pt", add_special_tokens=False)
        ids = model.generate(**inputs, generation_config=config)[0, inputs["input_ids"].shape[1]:].tolist()
        n = next((i for i, t in enumerate(ids) if t in engine.eos_ids), len(ids))
        out.append(Generation(tokenizer.decode(ids[:n], skip_special_tokens=True), inputs["input_ids"].shape[1],
                              n, "stop" if n < len(ids) else "length"))
    return out, time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="/tmp/smol_base", help="HF model folder")
    parser.add_argument("--test-file", default=None, help="prepared test.jsonl (default: synthetic prompts)")
    parser.add_argument("--n-prompts", type=int, default=16)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-new-tokens", type=int, default=96)  # the evaluate stage default
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "eval_generation.json"))
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)

    engine = load_engine("hf", args.model, threads=args.threads, batch_size=args.batch_size)
    if args.test_file:
        conversations = [ex.messages for ex in load_examples(Path(args.test_file), args.n_prompts)]
    else:
        conversations = synthetic_conversations(args.n_prompts)
    prompts = [engine.apply_chat_template(c) for c in conversations]
    params = SamplingParams(max_new_tokens=args.max_new_tokens)
    engine.generate(prompts[:2], params)  # warm-up (allocations, kernel selection) for both paths

    seq_eps, bat_eps, seq_tps, bat_tps = [], [], [], []
    for rep in range(args.repeats):
        seq, seq_s = one_at_a_time(engine, prompts, params)
        bat, speed = generate_timed(engine, prompts, params, args.batch_size)
        seq_eps.append(len(prompts) / seq_s)
        seq_tps.append(sum(g.completion_tokens for g in seq) / seq_s)
        bat_eps.append(speed["examples_per_second"])
        bat_tps.append(speed["tokens_per_second"])
        same = sum(a.text == b.text for a, b in zip(seq, bat, strict=True))
        print(f"rep {rep + 1}: one-at-a-time {seq_eps[-1]:.3f} ex/s ({seq_tps[-1]:.1f} tok/s), "
              f"batched {bat_eps[-1]:.3f} ex/s ({bat_tps[-1]:.1f} tok/s), identical outputs {same}/{len(prompts)}")

    ratio = statistics.median(bat_eps) / statistics.median(seq_eps)
    result = {
        "name": "eval_generation",
        "command": "python " + " ".join(sys.argv),
        "model": str(args.model), "n_prompts": len(prompts), "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens, "threads": args.threads, "repeats": args.repeats,
        "one_at_a_time_examples_per_second": statistics.median(seq_eps),
        "batched_examples_per_second": statistics.median(bat_eps),
        "one_at_a_time_tokens_per_second": statistics.median(seq_tps),
        "batched_tokens_per_second": statistics.median(bat_tps),
        "examples_per_second_ratio": ratio,
        "identical_outputs": same, "goal_ratio": 4.0, "goal_met": ratio >= 4.0,
        "versions": {"python": platform.python_version(), "torch": torch.__version__,
                     "transformers": __import__("transformers").__version__},
        # The dev box is shared: the load average says how contended both sides were.
        "machine": {"processor": platform.processor() or platform.machine(), "cpu_count": os.cpu_count(),
                    "torch_threads": torch.get_num_threads(), "load_average_1m_at_end": os.getloadavg()[0]},
    }
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    from stages.fileio import write_json

    write_json(args.output, result)
    print(f"batched / one-at-a-time examples/s: {ratio:.2f}x (goal >= 4x) -> {args.output}")


if __name__ == "__main__":
    main()
