"""What /metrics costs: our default server (serve.metrics=true) vs the same with serve.metrics=false, side by side
in one run, the three domains interleaved, 8 streaming clients.

    python bench/metrics_overhead.py                      # after `make run`: models/gguf + models/adapters/*
    python bench/metrics_overhead.py --repeats 8 --scrape-every 0       # no scraper beside the loads

Both servers start as `make serve` does (the default config; only the port and serve.metrics set) and stay up;
loads alternate between them (A B, then B A, ...) so drift hits both alike. A scrape of /metrics every
`--scrape-every` seconds (default 1, a harsh interval for Prometheus; 0 = none) runs beside the metrics server's
loads. Preconditions, checked: the metrics server's completion-token counters grew by the tokens its clients
received (within 2%), the other answers 404 on /metrics, every request succeeded and both did the same work (tokens per request within 25%).
Writes bench/results/metrics_overhead.json (+ .md): the median tokens/s of each, every run, and their ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.api_throughput import token_counter  # noqa: E402
from bench.domain_serving import SAME_WORK, bodies, domain_prompts, load, ours, plans, require  # noqa: E402
from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from bench.servers import start, stop  # noqa: E402
from stages.fileio import write_json, write_text  # noqa: E402

ON, OFF = "ours, metrics on", "ours, metrics off"


def completion_tokens(url: str) -> float:
    from prometheus_client.parser import text_string_to_metric_families

    text = httpx.get(url + "/metrics", timeout=10).text
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "domain_llm_completion_tokens_total")


async def scraped_load(url: str, work: list[dict], clients: int, count, every_s: float) -> dict:
    """The load, with a scrape of /metrics every `every_s` seconds beside it (0: none)."""
    done = asyncio.Event()

    async def scraper() -> int:
        scrapes = 0
        async with httpx.AsyncClient(timeout=10) as http:
            while not done.is_set():
                (await http.get(url + "/metrics")).raise_for_status()
                scrapes += 1
                try:
                    await asyncio.wait_for(done.wait(), timeout=every_s)
                except TimeoutError:
                    pass
        return scrapes

    task = asyncio.create_task(scraper()) if every_s > 0 else None
    result = await load(url, work, clients, count)
    done.set()
    result["scrapes"] = await task if task else 0
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--adapter-dir", type=Path, default=ROOT / "models" / "adapters")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=8)
    parser.add_argument("--scrape-every", type=float, default=1.0, help="seconds between scrapes; 0 = none")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "metrics_overhead.json")
    args = parser.parse_args()
    domains = sorted(p.parent.name for p in args.adapter_dir.glob("*/manifest.json"))
    require(args.gguf.is_file() and len(domains) >= 2, f"{args.gguf} and 2+ adapters in {args.adapter_dir} "
                                                       "(run `make run` first)")
    record = run_record()
    prompts, stops = domain_prompts(args.gguf, args.adapter_dir, domains, args.requests)
    plan = plans(domains, domains[0], prompts, args.requests)["mixed"]
    count = token_counter(args.gguf)
    servers = {ON: ours(ON, args.threads, args.clients), OFF: ours(OFF, args.threads, args.clients, "serve.metrics=false")}
    runs: dict[str, list[dict]] = {ON: [], OFF: []}
    with tempfile.TemporaryDirectory(prefix="metrics-overhead.") as tmp:
        try:
            for server in servers.values():
                start(server, Path(tmp), timeout_s=600)
            base_id = httpx.get(servers[ON].url + "/v1/models", timeout=10).json()["data"][0]["id"]
            require(httpx.get(servers[OFF].url + "/metrics", timeout=10).status_code == 404,
                    "serve.metrics=false still answers /metrics")
            work = bodies(plan, "ours", domains, base_id, args.max_tokens, stops)
            for server in servers.values():  # warm-up: prompt caches, lanes, adapters resident
                asyncio.run(load(server.url, work[:args.clients], args.clients, count))
            for repeat in range(args.repeats):
                order = [ON, OFF] if repeat % 2 == 0 else [OFF, ON]
                for name in order:
                    url = servers[name].url
                    before = completion_tokens(url) if name == ON else 0.0
                    result = asyncio.run(scraped_load(url, work, args.clients, count,
                                                      args.scrape_every if name == ON else 0))
                    require(result["failures"] == 0, f"{name}: {result['failure_reasons']}")
                    if name == ON:
                        result["counted_completion_tokens"] = completion_tokens(url) - before
                        received = result["tokens_per_request"] * (result["requests"] - result["failures"])
                        require(abs(result["counted_completion_tokens"] - received) <= 0.02 * received,
                                f"/metrics counted {result['counted_completion_tokens']} completion tokens, the "
                                f"clients received {received}")
                    runs[name].append(result)
                    print(f"{name} run {repeat}: {result}", flush=True)
        finally:
            for server in servers.values():
                stop(server)
    per_request = {n: statistics.median(r["tokens_per_request"] for r in rs) for n, rs in runs.items()}
    require(abs(per_request[ON] - per_request[OFF]) <= SAME_WORK * max(per_request.values()),
            f"different work: tokens per request {per_request}")
    median = {n: round(statistics.median(r["tokens_per_s"] for r in rs), 1) for n, rs in runs.items()}
    ratio = round(median[ON] / median[OFF], 3)
    result = {"name": "metrics_overhead", **finish_record(record), "argv": sys.argv, "domains": domains,
              "clients": args.clients, "max_tokens": args.max_tokens, "requests": args.requests,
              "repeats": args.repeats, "scrape_every_s": args.scrape_every, "runs": runs, "median_tokens_per_s": median, "on_over_off": ratio}
    spread = {n: [r["tokens_per_s"] for r in rs] for n, rs in runs.items()}
    lines = ["# What /metrics costs", "", "```", " ".join(sys.argv), "```", "",
             f"The default server with serve.metrics=true (scraped every {args.scrape_every:g} s during its loads; 0 = "
             f"never) vs false; "
             f"{len(domains)} domains interleaved, {args.clients} streaming clients, {args.max_tokens} max tokens, "
             f"{args.requests} requests per run, {args.repeats} runs each, alternating.", "",
             "| server | median tok/s | runs |", "|---|---:|---|",
             *(f"| {n} | {median[n]} | {', '.join(map(str, spread[n]))} |" for n in (ON, OFF)), "",
             f"metrics on / off: **{ratio}x**"]
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), "\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
