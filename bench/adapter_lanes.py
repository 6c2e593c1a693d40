"""How the GGUF engine should spread adapter groups over llama.cpp contexts: lane configurations side by side in
one process (no HTTP), the same closed-loop load for each: base model only, one domain, the three domains
interleaved, and clients spread over 16 adapters. The design in docs/serving.md ("Adapters at full speed") and
the serve.lanes / serve.spare_lanes defaults come from this table.

    python bench/adapter_lanes.py                         # configs 1+0 2+0 2+1 2+6 8+0, 8 clients, 48 tokens
    python bench/adapter_lanes.py --configs 1+0,2+6 --repeats 2

A config "L+S" is `lanes=L, spare_lanes=S` (stages/inference/lanes.py): L lanes of parallel/L sequences and
threads/L threads, S one-sequence one-thread spares. "1+0" is the one context of before (adapter groups take
turns in it). Every load: `--clients` threads each sending one request at a time (greedy, repeat_penalty 1,
`--max-tokens`, ignore_eos so that every request decodes the same number of tokens on every config), the test
questions of models/adapters' domains rendered with their chat template; the 16 adapters are random LoRA GGUFs
shaped like the legal one (bench/many_adapters.py). Completion tokens per second of wall time, median of the
repetitions, and the engine's adapter switches. Writes bench/results/adapter_lanes.json (+ .md).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.many_adapters import random_adapters  # noqa: E402
from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_text  # noqa: E402

LOADS = ("base", "one", "mixed", "spread16")


def closed_loop(engine, jobs: list[tuple[str, str | None]], clients: int, params) -> float:
    """Tokens per second of `clients` threads working through `jobs` [(prompt, adapter)] one request each."""
    queue, tokens, lock = list(jobs), [0], threading.Lock()

    def client() -> None:
        while True:
            with lock:
                if not queue:
                    return
                prompt, adapter = queue.pop(0)
            [generation] = engine.generate([prompt], params, adapter=adapter)
            with lock:
                tokens[0] += generation.completion_tokens
    threads = [threading.Thread(target=client) for _ in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return tokens[0] / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--adapter-dir", type=Path, default=ROOT / "models" / "adapters")
    parser.add_argument("--configs", default="1+0,2+0,2+1,2+6,8+0")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "adapter_lanes.json")
    args = parser.parse_args()
    from stages.inference import SamplingParams
    from stages.inference.gguf_engine import GGUFEngine

    domains = sorted(p.parent.name for p in args.adapter_dir.glob("*/manifest.json"))
    if len(domains) < 2 or not args.gguf.is_file():
        sys.exit(f"error: need {args.gguf} and 2+ adapters in {args.adapter_dir}; run `make run` first")
    record = run_record()
    params = SamplingParams(max_new_tokens=args.max_tokens, temperature=0.0, repeat_penalty=1.0, ignore_eos=True)
    table: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="adapter-lanes.") as tmp:
        random = random_adapters(args.adapter_dir / domains[0] / "adapter.gguf", Path(tmp), 16)
        files = {**{d: args.adapter_dir / d / "adapter.gguf" for d in domains}, **random}
        for config in args.configs.split(","):
            lanes, spare = (int(x) for x in config.split("+"))
            # GGUFEngine itself, as serving/app.py builds it: load_engine keeps the stages' one context
            engine = GGUFEngine(args.gguf, threads=args.threads, n_ctx=2048, parallel=args.parallel,
                                adapters=files, lanes=lanes, spare_lanes=spare)
            try:
                questions = {d: [engine.apply_chat_template([{"role": "user", "content": next(
                    m["content"] for m in r["messages"] if m["role"] == "user")}])
                    for r in read_jsonl(ROOT / "data" / "processed" / d / "test.jsonl")[:args.requests]] for d in domains}
                one = domains[0]
                jobs = {"base": [(q, None) for q in questions[one]], "one": [(q, one) for q in questions[one]],
                        "mixed": [(questions[domains[i % len(domains)]][i // len(domains)], domains[i % len(domains)])
                                  for i in range(args.requests)],
                        "spread16": [(q, f"rand-{i % 16:02d}") for i, q in enumerate(questions[one])]}
                closed_loop(engine, jobs["mixed"][:args.clients], args.clients, SamplingParams(max_new_tokens=4))
                row: dict[str, dict] = {}
                for load in LOADS:
                    before = engine.scheduler.stats["adapter_switches"]
                    rates = [closed_loop(engine, jobs[load], args.clients, params) for _ in range(args.repeats)]
                    row[load] = {"tokens_per_s": round(statistics.median(rates), 1),
                                 "runs": [round(r, 1) for r in rates],
                                 "adapter_switches": engine.scheduler.stats["adapter_switches"] - before}
                    print(f"{config} {load}: {row[load]}", flush=True)
                table[config] = row
            finally:
                engine.close()
    base = next(iter(table))
    result = {"name": "adapter_lanes", **finish_record(record), "argv": sys.argv, "gguf": str(args.gguf),
              "domains": domains, "clients": args.clients, "parallel": args.parallel, "threads": args.threads,
              "max_tokens": args.max_tokens, "requests": args.requests, "repetitions": args.repeats,
              "table": table, "over_first": {c: {load: round(r[load]["tokens_per_s"] / table[base][load]["tokens_per_s"], 3)
                                                 for load in LOADS} for c, r in table.items()}}
    lines = ["# Adapter lanes: lane configurations side by side (in-process engine)", "", "```", " ".join(sys.argv), "```",
             "", f"{args.clients} client threads, parallel {args.parallel}, {args.threads} threads, {args.max_tokens} "
             f"tokens per request (ignore_eos), {args.requests} requests per load, median of {args.repeats}. Completion "
             f"tokens/s (adapter switches); in brackets: over `{base}`.", "",
             "| lanes + spare | base model only | one domain | " + f"{len(domains)} domains interleaved | 16 adapters |",
             "|---|---:|---:|---:|---:|"]
    for config, row in table.items():
        cells = [f"{row[load]['tokens_per_s']} ({row[load]['adapter_switches']}) [{result['over_first'][config][load]}x]"
                 for load in LOADS]
        lines.append(f"| {config} | " + " | ".join(cells) + " |")
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
