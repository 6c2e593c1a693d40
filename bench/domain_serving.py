"""Serving several domains from one base, ours vs llama.cpp's `llama-server` side by side in one run: the base
model with and without the adapters loaded, one domain, and three domains interleaved; plus memory.

    python bench/domain_serving.py                              # models/gguf/model-q4_k_m.gguf + models/adapters/*
    python bench/domain_serving.py --clients 8 --max-tokens 48 --repeats 3 --merged

Servers, all up at once (an idle one uses no CPU), loads run one after the other, the server order rotating
every repetition:
- ours as `make serve` starts it (the default config: every adapter published for the base, the reranker, the
  /ask index, the UI; only the port is set, the server's cwd is a temp folder), and the same with
  serve.adapters={} (none loaded);
- llama-server built from the llama.cpp our runtime was built from (bench/llama_server_peer.py), `-np
  --clients`, `-c n_ctx x clients`, with `--lora <each adapter> --lora-init-without-apply`, and without.
Every request is the OpenAI /v1/completions body with the domain's test question rendered with the chat template
and the domain's system prompt, greedy, repeat_penalty 1 (ours would otherwise apply its default 1.1), the
model's end-of-turn strings as stops, streamed. Ours picks the adapter by `model` (domain-llm-<d> or the base's
id); llama-server by the request's `lora` field (the domain's adapter at scale 1, the others 0; all 0 for the
base model). Loads (closed-loop clients, `--requests` each): base model only, one domain (`--domain`), and the
three domains interleaved (request i to domain i mod n).

Preconditions, checked (the run fails when one does not hold): ours lists every domain's id and its adapters
component is ready, and lists none with serve.adapters={}; llama-server lists every adapter file (GET
/lora-adapters), and none in the peer without; every request succeeded; both servers did the same work (tokens
per request within 25% of each other on every load); our mixed load switched adapters in some lane, or kept each
domain on its own lane (the server's counters are recorded). Writes bench/results/domain_serving.json (+ .md)
with the exact command, what every server said it loaded, and the adapter switches and lanes of our server.

--merged adds the memory of the alternative: one `domain-llm serve` per domain on its merged q4_k_m GGUF
(published with quantize.merged_per_domain, else converted here), each's VmRSS after the same warm load.
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
from bench.llama_server_peer import DEFAULT_CACHE, find_or_build, llama_server_argv  # noqa: E402
from bench.run_info import RESULTS_DIR, finish_record, free_port, percentile, run_record  # noqa: E402
from bench.servers import Server, start, stop  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_text  # noqa: E402

LOADS = {"base": "base model only", "one": "one domain", "mixed": "domains interleaved"}
SAME_WORK = 0.25  # tokens per request of ours and the peer may differ this much (greedy rounding), no more


def ours(name: str, threads: int, parallel: int, *extra: str) -> Server:
    port = free_port()
    argv = [str(Path(sys.executable).parent / "domain-llm"), "serve", f"serve.port={port}", f"threads={threads}",
            f"serve.parallel={parallel}", *extra]
    return Server(name, argv, "/api/v1/health", port)


def peer(name: str, binary: Path, gguf: Path, threads: int, n_ctx: int, parallel: int,
         adapters: list[Path]) -> Server:
    port = free_port()
    argv = llama_server_argv(binary, gguf, port, threads, n_ctx, parallel, "auto")
    if adapters:
        argv += [arg for path in adapters for arg in ("--lora", str(path))] + ["--lora-init-without-apply"]
    return Server(name, argv, "/health", port)


def require(condition: bool, message: str) -> None:
    if not condition:
        sys.exit(f"error: precondition failed: {message}")


def batching(server: Server) -> dict:
    return httpx.get(server.url + "/api/v1/model/info", timeout=10).json()["batching"]


def rss_mb(server: Server) -> float:
    for line in Path(f"/proc/{server.process.pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return round(int(line.split()[1]) / 1024, 1)
    raise RuntimeError("no VmRSS")


def domain_prompts(gguf: Path, adapter_dir: Path, domains: list[str], per_domain: int) -> tuple[dict, list[str]]:
    """Each domain's test questions as its chat template renders them with the domain's system prompt, and the
    model's end-of-turn strings."""
    from stages.inference import load_engine

    engine = load_engine("gguf", gguf, threads=1, n_ctx=512)
    prompts = {}
    for domain in domains:
        system = json.loads((adapter_dir / domain / "manifest.json").read_text())["system_prompt"]
        records = read_jsonl(ROOT / "data" / "processed" / domain / "test.jsonl")[:per_domain]
        questions = [next(m["content"] for m in r["messages"] if m["role"] == "user") for r in records]
        prompts[domain] = [engine.apply_chat_template(([{"role": "system", "content": system}] if system else [])
                                                      + [{"role": "user", "content": q}]) for q in questions]
    stops = list(engine.contract.stop_strings)
    engine.close()
    return prompts, stops


async def load(url: str, bodies: list[dict], clients: int, count) -> dict:
    """`clients` closed-loop clients working through `bodies`, each taking the next one."""
    queue = list(bodies)
    results = []

    async def client(http: httpx.AsyncClient) -> None:
        while queue:
            results.append(await one_request(http, url, queue.pop(0)))

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(http) for _ in range(clients)))
        wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    tokens = sum(count(r["text"]) for r in ok)
    return {"requests": len(results), "failures": len(results) - len(ok),
            "failure_reasons": sorted({r["reason"] for r in results if not r["ok"]}),
            "tokens_per_s": round(tokens / wall, 2), "requests_per_s": round(len(results) / wall, 3),
            "tokens_per_request": round(tokens / max(1, len(ok)), 2),
            "p95_latency_s": round(percentile([r["latency"] for r in results], 95), 3), "seconds": round(wall, 2)}


def plans(domains: list[str], one: str, prompts: dict, requests: int) -> dict[str, list[tuple[str | None, str]]]:
    """[(domain or None for the base model, prompt)] per load."""
    mixed = [(domains[i % len(domains)], prompts[domains[i % len(domains)]][i // len(domains)]) for i in range(requests)]
    return {"base": [(None, p) for p in prompts[one][:requests]], "one": [(one, p) for p in prompts[one][:requests]],
            "mixed": mixed}


def bodies(plan: list[tuple[str | None, str]], server: str, domains: list[str], base_id: str, max_tokens: int,
           stops: list[str]) -> list[dict]:
    common = {"max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0, "top_k": 0, "min_p": 0.0,
              "repeat_penalty": 1.0, "stop": stops, "stream": True, "stream_options": {"include_usage": True}}
    out = []
    for domain, prompt in plan:
        if server.startswith("ours"):
            out.append({**common, "prompt": prompt, "model": f"domain-llm-{domain}" if domain else base_id})
        else:
            lora = [{"id": i, "scale": 1.0 if d == domain else 0.0} for i, d in enumerate(domains)]
            out.append({**common, "prompt": prompt, **({"lora": lora} if server == "llama-server" else {})})
    return out


def merged_rss(args, domains: list[str], served_type: str, prompts: dict, stops: list[str], count, tmp: Path) -> dict:
    """One server per domain on its merged GGUF (all running at once), each's VmRSS after the same warm load."""
    from stages.config import compose
    from stages.quantize.api import convert_and_quantize
    from stages.quantize.main import tensor_type_overrides

    recipe = tensor_type_overrides(compose([]).quantize.get("tensor_types"))
    files = {}
    for domain in domains:
        published = args.adapter_dir / domain / f"model-{served_type}.gguf"
        if not published.is_file():
            made, _ = convert_and_quantize(ROOT / "models" / "merged" / domain, tmp / domain, types=[served_type],
                                           threads=2, tensor_types=recipe)
            published = made[served_type]
        files[domain] = published
    servers = [ours(f"merged {d}", args.threads, args.clients, f"serve.model={files[d].resolve()}", "serve.adapters={}")
               for d in domains]
    try:
        for server in servers:
            start(server, tmp)
            require(len(server.loaded["models"]) == 1, f"{server.name} serves {server.loaded}")
        for server, domain in zip(servers, domains, strict=True):
            plan = [(None, p) for p in prompts[domain][:args.clients]]
            asyncio.run(load(server.url, bodies(plan, "ours", domains, server.loaded["models"][0], args.max_tokens,
                                                stops), args.clients, count))
        return {"each": {d: rss_mb(s) for d, s in zip(domains, servers, strict=True)},
                "file_mb": round(sum(f.stat().st_size for f in files.values()) / 1e6, 1)}
    finally:
        for server in servers:
            stop(server)


def markdown(result: dict) -> str:
    rows, ratio = result["table"], result["ratios"]
    lines = ["# Serving several domains from one base: ours vs llama-server", "", "```", " ".join(result["argv"]), "```",
             "", f"{result['clients']} clients, {result['max_tokens']} max tokens, greedy, repeat_penalty 1, "
             f"{result['threads']} threads, {result['requests']} requests per load, {result['repetitions']} "
             f"repetitions (medians); one domain: `{result['one_domain']}`. Ours: the default config "
             f"(lanes {result['lanes']}); llama-server `-np {result['clients']}` with `--lora` x "
             f"{len(result['domains'])} `--lora-init-without-apply` and the request's `lora` field.", "",
             "| load | ours tok/s (req/s) | llama-server tok/s (req/s) | ours / llama-server | p95 s ours / llama-server "
             "| tokens per request ours / llama-server |", "|---|---:|---:|---:|---:|---:|"]
    for key, label in (("base_adapters", "base model only, adapters loaded (default server)"),
                       ("base_none", "base model only, no adapters loaded"), ("one", f"one domain (`domain-llm-{result['one_domain']}`)"),
                       ("mixed", f"{len(result['domains'])} domains interleaved")):
        o, p = rows[key]["ours"], rows[key]["llama-server"]
        lines.append(f"| {label} | {o['tokens_per_s']} ({o['requests_per_s']}) | {p['tokens_per_s']} "
                     f"({p['requests_per_s']}) | **{ratio[key]}x** | {o['p95_latency_s']} / {p['p95_latency_s']} | "
                     f"{o['tokens_per_request']} / {p['tokens_per_request']} |")
    rss = result["rss_mb"]
    lines += ["", f"Ours, base traffic with the adapters loaded / with none loaded: **{ratio['ours_base_adapters_over_none']}x**.",
              f"Our adapter switches (all lanes) during the mixed loads: {result['adapter_switches']['mixed']}, the "
              f"one-domain loads: {result['adapter_switches']['one']}.", "",
              "| memory | VmRSS (MB) |", "|---|---:|",
              f"| ours, base + {len(result['domains'])} adapters (after the loads) | {rss['ours']} |",
              f"| ours, base alone | {rss['ours (no adapters)']} |",
              f"| llama-server, base + adapters | {rss['llama-server']} |"]
    if "merged" in result:
        lines.append(f"| {len(result['domains'])} servers (ours), merged {result['served_type']} each | "
                     f"{round(sum(result['merged']['each'].values()), 1)} |")
    lines += ["", "Every server's own listing (models, components, LoRA adapters) is in the .json (`servers_loaded`).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--adapter-dir", type=Path, default=ROOT / "models" / "adapters")
    parser.add_argument("--domain", default="legal", help="the one-domain load's domain")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=32, help="requests per load")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--n-ctx", type=int, default=2048, help="per sequence, as serve.n_ctx")
    parser.add_argument("--merged", action="store_true", help="also the memory of one merged server per domain")
    parser.add_argument("--peer-cache", type=Path, default=DEFAULT_CACHE)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "domain_serving.json")
    args = parser.parse_args()
    domains = sorted(p.parent.name for p in args.adapter_dir.glob("*/manifest.json"))
    if len(domains) < 2 or args.domain not in domains or not args.gguf.is_file():
        sys.exit(f"error: need {args.gguf} and 2+ adapters (with {args.domain}) in {args.adapter_dir}; run `make run`")
    record = run_record()
    binary = find_or_build(args.peer_cache)
    prompts, stops = domain_prompts(args.gguf, args.adapter_dir, domains, args.requests)
    count = token_counter(args.gguf)
    adapter_files = [(args.adapter_dir / d / "adapter.gguf").resolve() for d in domains]
    servers = {"ours": ours("ours", args.threads, args.clients),
               "ours (no adapters)": ours("ours (no adapters)", args.threads, args.clients, "serve.adapters={}"),
               "llama-server": peer("llama-server", binary, args.gguf.resolve(), args.threads, args.n_ctx, args.clients,
                                    adapter_files),
               "llama-server (no adapters)": peer("llama-server (no adapters)", binary, args.gguf.resolve(),
                                                  args.threads, args.n_ctx, args.clients, [])}
    work = plans(domains, args.domain, prompts, args.requests)
    runs = {(s, kind): [] for s in servers for kind in LOADS if "no adapters" not in s or kind == "base"}
    switches = {"one": 0, "mixed": 0}
    result = {}
    with tempfile.TemporaryDirectory(prefix="domain-bench.") as tmp:
        try:
            for server in servers.values():
                start(server, Path(tmp))
                if server.name.startswith("llama-server"):
                    server.loaded["lora_adapters"] = httpx.get(server.url + "/lora-adapters", timeout=10).json()
            loaded = {name: s.loaded for name, s in servers.items()}
            ids = [f"domain-llm-{d}" for d in domains]
            require(set(ids) <= set(loaded["ours"]["models"]) and loaded["ours"]["components"].get("adapters") == "ready",
                    f"our default server lists {loaded['ours']}, not every domain of {args.adapter_dir}")
            require(len(loaded["ours (no adapters)"]["models"]) == 1, f"ours without adapters lists {loaded['ours (no adapters)']}")
            listed = sorted(Path(a["path"]).resolve() for a in loaded["llama-server"]["lora_adapters"])
            require(listed == sorted(adapter_files), f"llama-server lists the adapters {listed}, not {adapter_files}")
            require(loaded["llama-server (no adapters)"]["lora_adapters"] == [], "the peer without adapters lists some")
            base_id = loaded["ours"]["models"][0]
            for server in servers.values():  # warm-up: every server answers each domain's first prompts once
                plan = [(d if "no adapters" not in server.name else None, prompts[d][0]) for d in domains]
                asyncio.run(load(server.url, bodies(plan, server.name, domains, base_id, 8, stops), args.clients, count))
            names = list(servers)
            for rep in range(args.repeats):
                order = names[rep % len(names):] + names[:rep % len(names)]
                for load_name in LOADS:
                    for name in order:
                        if (name, load_name) not in runs:
                            continue
                        server = servers[name]
                        before = batching(server) if name == "ours" else None
                        row = asyncio.run(load(server.url, bodies(work[load_name], name, domains, base_id,
                                                                  args.max_tokens, stops), args.clients, count))
                        if before is not None:
                            after = batching(server)
                            row["adapter_switches"] = after["adapter_switches"] - before["adapter_switches"]
                            switches[load_name] = switches.get(load_name, 0) + row["adapter_switches"]
                        require(row["failures"] == 0, f"{name}, {load_name}: {row['failure_reasons']}")
                        runs[(name, load_name)].append(row)
                        print(f"rep {rep + 1} {load_name:5} {name:27} {row}", flush=True)
            info = httpx.get(servers["ours"].url + "/api/v1/model/info", timeout=10).json()
            rss = {name: rss_mb(s) for name, s in servers.items()}
        finally:
            for server in servers.values():
                stop(server)
        median = {key: {k: statistics.median(r[k] for r in rows) for k in
                        ("tokens_per_s", "requests_per_s", "p95_latency_s", "tokens_per_request")}
                  for key, rows in runs.items()}
        table = {"base_adapters": {"ours": median[("ours", "base")], "llama-server": median[("llama-server", "base")]},
                 "base_none": {"ours": median[("ours (no adapters)", "base")],
                               "llama-server": median[("llama-server (no adapters)", "base")]},
                 "one": {"ours": median[("ours", "one")], "llama-server": median[("llama-server", "one")]},
                 "mixed": {"ours": median[("ours", "mixed")], "llama-server": median[("llama-server", "mixed")]}}
        for key, row in table.items():
            a, b = row["ours"]["tokens_per_request"], row["llama-server"]["tokens_per_request"]
            require(abs(a - b) <= SAME_WORK * max(a, b), f"{key}: tokens per request {a} (ours) vs {b} "
                                                          "(llama-server): not the same work")
        require(switches["mixed"] > 0 or info["batching"]["lanes"] >= len(domains),
                "the mixed load neither switched adapters nor had a lane per domain: were the adapters used?")
        ratios = {key: round(row["ours"]["tokens_per_s"] / row["llama-server"]["tokens_per_s"], 3)
                  for key, row in table.items()}
        ratios["ours_base_adapters_over_none"] = round(table["base_adapters"]["ours"]["tokens_per_s"]
                                                       / table["base_none"]["ours"]["tokens_per_s"], 3)
        result = {"name": "domain_serving", **finish_record(record), "argv": sys.argv, "gguf": str(args.gguf),
                  "domains": domains, "one_domain": args.domain, "served_type": args.gguf.stem.removeprefix("model-"),
                  "clients": args.clients, "max_tokens": args.max_tokens, "requests": args.requests,
                  "threads": args.threads, "repetitions": args.repeats, "lanes": info["lanes"],
                  "table": table, "ratios": ratios, "adapter_switches": switches, "batching": info["batching"],
                  "runs": {f"{s} | {kind}": rows for (s, kind), rows in runs.items()}, "servers_loaded": loaded,
                  "rss_mb": rss, "adapter_file_mb": round(sum(f.stat().st_size for f in adapter_files) / 1e6, 1)}
        if args.merged:
            result["merged"] = merged_rss(args, domains, result["served_type"], prompts, stops, count, Path(tmp))
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
