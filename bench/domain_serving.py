"""Serving several domains from one base: tokens/s under mixed-domain vs single-domain load, and memory of one
server with the base + every adapter vs one server per domain on its merged q4_k_m GGUF. One run, side by side.

    python bench/domain_serving.py                              # models/gguf/model-q4_k_m.gguf + models/adapters/*
    python bench/domain_serving.py --clients 8 --max-tokens 48 --repeats 3

1. `domain-llm serve` on the base with every adapter published for it (adapter@<domain>). At `--clients`
   closed-loop clients (OpenAI /v1/completions, streamed, greedy, each domain's own test questions rendered
   with its chat template and system prompt): single-domain load (every request to one domain, each domain in
   turn) and mixed load (request i to domain i mod n, so every decode step has several adapters in flight).
   Tokens are the streamed text tokenized with the GGUF's tokenizer. Repetitions alternate the two loads.
2. The merged alternative: each domain's merged model quantized like the base (models/adapters/<d>/model-<type>.gguf
   when published with quantize.merged_per_domain, else converted and quantized here into a temp folder), one
   `domain-llm serve` per domain, all running at once. Memory is each server's VmRSS (/proc) after the same warm
   load, summed for the merged servers; every server has the same serve.parallel and serve.n_ctx.
Writes bench/results/domain_serving.json (with the exact command) and .md.

Preconditions it checks, failing the run when one does not hold: the shared server lists every domain's model id
and its adapters component is ready (paths are passed absolute: the servers run in a temporary directory),
mixed load really switches adapters (the server's own counter rises), and each merged server lists its one model
with no adapter. What every server said it loaded is recorded with the figures.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.api_throughput import one_request, token_counter  # noqa: E402
from bench.run_info import RESULTS_DIR, finish_record, free_port, percentile, run_record  # noqa: E402
from bench.servers import Server, start, stop  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_text  # noqa: E402


def serve(gguf: Path, threads: int, parallel: int, name: str, *extra: str) -> Server:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "domain-llm"), "serve", f"serve.model={gguf.resolve()}",
            f"serve.port={port}", f"threads={threads}", f"serve.parallel={parallel}", "serve.rerank=false", "serve.index=null",
            "serve.ui=false", "serve.queue_size=64", "serve.log_requests=false", *extra]
    return Server(name, argv, "/api/v1/health", port)


def require(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"error: precondition failed: {message}")


def adapter_switches(server: Server) -> int:
    return httpx.get(server.url + "/api/v1/model/info", timeout=10).json()["batching"]["adapter_switches"]


def rss_mb(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def domain_prompts(gguf: Path, adapter_dir: Path, domains: list[str], per_domain: int) -> dict[str, list[str]]:
    """Each domain's test questions as its chat template renders them with the domain's system prompt."""
    from stages.inference import load_engine

    engine = load_engine("gguf", gguf, threads=1, n_ctx=512)
    prompts = {}
    for domain in domains:
        system = json.loads((adapter_dir / domain / "manifest.json").read_text())["system_prompt"]
        records = read_jsonl(ROOT / "data" / "processed" / domain / "test.jsonl")[:per_domain]
        questions = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in records]
        prompts[domain] = [engine.apply_chat_template(([{"role": "system", "content": system}] if system else [])
                                                      + [{"role": "user", "content": q}]) for q in questions]
    engine.close()
    return prompts


async def load(url: str, plan: list[tuple[str, str]], clients: int, max_tokens: int, count) -> dict:
    """`clients` closed-loop clients working through `plan` [(model id, prompt)], each taking the next item."""
    queue = list(enumerate(plan))
    results = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            _, (model, prompt) = queue.pop(0)
            body = {"model": model, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0.0, "stream": True,
                    "stream_options": {"include_usage": True}}
            results.append(await one_request(http, url, body))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    tokens = sum(count(r["text"]) for r in ok)
    return {"requests": len(results), "failures": len(results) - len(ok), "tokens_per_s": round(tokens / wall, 2),
            "p95_latency_s": round(percentile([r["latency"] for r in results], 95), 3), "seconds": round(wall, 2)}


def merged_files(adapter_dir: Path, domains: list[str], served_type: str, tmp: Path) -> dict[str, Path]:
    from stages.config import compose
    from stages.quantize.api import convert_and_quantize
    from stages.quantize.main import tensor_type_overrides

    recipe = tensor_type_overrides(compose([]).quantize.get("tensor_types"))
    files = {}
    for domain in domains:
        published = adapter_dir / domain / f"model-{served_type}.gguf"
        if published.is_file():
            files[domain] = published
            continue
        made, _ = convert_and_quantize(ROOT / "models" / "merged" / domain, tmp / domain, types=[served_type],
                                       threads=2, tensor_types=recipe)
        files[domain] = made[served_type]
    return files


def markdown(result: dict) -> str:
    lines = ["# Serving several domains from one base", "", "```", " ".join(result["argv"]), "```", "",
             f"{result['clients']} clients, {result['max_tokens']} max tokens, {result['threads']} threads, "
             f"serve.parallel {result['parallel']}, {result['repetitions']} repetitions (medians).", "",
             "| load | tokens/s | p95 latency (s) | failures |", "|---|---:|---:|---:|"]
    for name in ("single_domain", "mixed_domains"):
        row = result[name]
        lines.append(f"| {name.replace('_', ' ')} | {row['tokens_per_s']} | {row['p95_latency_s']} | {row['failures']} |")
    listed = result["servers_loaded"]["base + adapters"]["models"]
    lines += ["", f"mixed / single tokens/s: **{result['mixed_over_single']}x**; adapter switches under mixed "
              f"load: {result['adapter_switches_mixed']}; the shared server listed {listed}", "",
              "| memory | RSS (MB) | model files (MB) |", "|---|---:|---:|",
              f"| one server: base + {len(result['domains'])} adapters | {result['rss_mb']['base_plus_adapters']} | "
              f"{result['file_mb']['base_plus_adapters']} |",
              f"| {len(result['domains'])} servers: merged {result['served_type']} each | "
              f"{result['rss_mb']['merged_servers']} | {result['file_mb']['merged']} |", "",
              f"base + adapters / merged servers RSS: **{result['rss_ratio']}x**", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--adapter-dir", type=Path, default=ROOT / "models" / "adapters")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=32, help="requests per load")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--parallel", type=int, default=8)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "domain_serving.json")
    args = parser.parse_args()
    domains = sorted(p.parent.name for p in args.adapter_dir.glob("*/manifest.json"))
    if len(domains) < 2 or not args.gguf.is_file():
        sys.exit(f"error: need {args.gguf} and 2+ adapters in {args.adapter_dir}; run `make run` first")
    record = run_record()
    served_type = args.gguf.stem.removeprefix("model-")
    prompts = domain_prompts(args.gguf, args.adapter_dir, domains, args.requests)
    count = token_counter(args.gguf)
    ids = {d: f"domain-llm-{d}" for d in domains}
    mixed = [(ids[domains[i % len(domains)]], prompts[domains[i % len(domains)]][i // len(domains)])
             for i in range(args.requests)]
    runs: dict[str, list[dict]] = {"single_domain": [], "mixed_domains": []}
    with tempfile.TemporaryDirectory(prefix="domain-bench.") as tmp:
        shared = serve(args.gguf, args.threads, args.parallel, "base + adapters",
                       f"serve.adapter_dir={args.adapter_dir.resolve()}")
        start(shared, Path(tmp))
        loaded = {"base + adapters": shared.loaded}
        try:
            require(set(ids.values()) <= set(shared.loaded["models"]),
                    f"the shared server lists {shared.loaded['models']}, not every domain of {args.adapter_dir}")
            require(shared.loaded["components"].get("adapters") == "ready",
                    f"the shared server's adapters are {shared.loaded['components'].get('adapters')}")
            asyncio.run(load(shared.url, mixed[:args.clients], args.clients, 8, count))  # warm-up
            switches_mixed = 0
            for rep in range(args.repeats):
                order = ["single_domain", "mixed_domains"][:: 1 if rep % 2 == 0 else -1]
                for name in order:
                    if name == "mixed_domains":
                        before = adapter_switches(shared)
                        runs[name].append(asyncio.run(load(shared.url, mixed, args.clients, args.max_tokens, count)))
                        runs[name][-1]["adapter_switches"] = adapter_switches(shared) - before
                        switches_mixed += runs[name][-1]["adapter_switches"]
                    else:  # every domain alone in turn, one figure for all of them
                        parts = [asyncio.run(load(shared.url, [(ids[d], p) for p in prompts[d][:args.requests]],
                                                  args.clients, args.max_tokens, count)) for d in domains]
                        runs[name].append({"tokens_per_s": round(statistics.mean(p["tokens_per_s"] for p in parts), 2),
                                           "p95_latency_s": max(p["p95_latency_s"] for p in parts),
                                           "failures": sum(p["failures"] for p in parts)})
                    print(f"rep {rep + 1} {name}: {runs[name][-1]}", flush=True)
            shared_rss = rss_mb(shared)
            switches = httpx.get(shared.url + "/api/v1/model/info", timeout=10).json()["batching"]
            require(switches_mixed > 0, "mixed-domain load made no adapter switch: the adapters were not used")
        finally:
            stop(shared)
        merged = merged_files(args.adapter_dir, domains, served_type, Path(tmp))
        servers = [serve(merged[d], args.threads, args.parallel, f"merged {d}", "serve.adapters={}") for d in domains]
        try:
            for server in servers:
                start(server, Path(tmp))
                loaded[server.name] = server.loaded
                require(len(server.loaded["models"]) == 1 and server.loaded["components"]["adapters"] == "disabled",
                        f"{server.name} serves {server.loaded}; a merged server serves its one model")
            for server, domain in zip(servers, domains, strict=True):  # the same warm load each
                asyncio.run(load(server.url, [("auto", p) for p in prompts[domain][:args.clients]], args.clients,
                                 args.max_tokens, count))
            merged_rss = [rss_mb(s) for s in servers]
            merged_mb = round(sum(merged[d].stat().st_size for d in domains) / 1e6, 1)
        finally:
            for server in servers:
                stop(server)
    median = {name: {k: statistics.median(r[k] for r in rows) for k in ("tokens_per_s", "p95_latency_s", "failures")}
              for name, rows in runs.items()}
    adapters_mb = sum((args.adapter_dir / d / "adapter.gguf").stat().st_size for d in domains) / 1e6
    result = {"name": "domain_serving", **finish_record(record), "argv": sys.argv, "gguf": str(args.gguf),
              "domains": domains, "served_type": served_type, "clients": args.clients, "max_tokens": args.max_tokens,
              "threads": args.threads, "parallel": args.parallel, "repetitions": args.repeats, "runs": runs,
              **median, "mixed_over_single": round(median["mixed_domains"]["tokens_per_s"]
                                                   / median["single_domain"]["tokens_per_s"], 3),
              "batching": switches, "adapter_switches_mixed": switches_mixed, "servers_loaded": loaded,
              "rss_mb": {"base_plus_adapters": shared_rss, "merged_servers": round(sum(merged_rss), 1),
                         "merged_each": dict(zip(domains, merged_rss, strict=True))},
              "file_mb": {"base_plus_adapters": round(args.gguf.stat().st_size / 1e6 + adapters_mb, 1),
                          "merged": merged_mb}}
    result["rss_ratio"] = round(shared_rss / result["rss_mb"]["merged_servers"], 3)
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
