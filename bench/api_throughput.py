"""API throughput and latency: our server (`domain-llm serve`) vs `python -m llama_cpp.server` on the same GGUF,
same prompts, same max_tokens, greedy, same thread count, at 1, 4 and 8 concurrent clients, side by side in one
run. Prints completion tokens/s, requests/s, p50/p95 latency and the ours/peer ratios; writes
bench/results/api_throughput.json with the command.

    python bench/api_throughput.py --gguf models/gguf/model-q4_k_m.gguf
    python bench/api_throughput.py --gguf "$(python -c 'from stages.base.materialize import smollm2_gguf_path as p; print(p())')" --quick

Both servers run as subprocesses on 127.0.0.1 (free ports) and are stopped by PID at the end. Both get the
OpenAI `/v1/completions` request with the same chat-templated prompt, max_tokens, temperature 0 and neutral
sampling (top_k 0, min_p 0, repeat_penalty 1; our server ignores the llama.cpp-only keys and already uses
those values), with the model's end-of-turn tokens (its chat contract) as stop strings. For each concurrency level, each repetition runs one server right
after the other (alternating which goes first); medians over repetitions are reported after a warm-up.

Threads: llama.cpp threads spin-wait on each other, so on an oversubscribed box 2 threads can be 10x slower
than 1 (measured here: 1 vs 10 tok/s while other jobs ran). Pass --threads 1 when the load average is above
the core count; the same value always goes to both servers. --cpu-hog N keeps N busy-looping processes
running during the measurements, to see how each server copes with a neighbour on the CPU:

    python bench/api_throughput.py --threads 2 --concurrency 1 --cpu-hog 1 --output bench/results/api_throughput_hog.json
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.run_info import (  # noqa: E402
    QUESTIONS,
    RESULTS_DIR,
    chat_messages,
    finish_record,
    free_port,
    percentile,
    run_record,
)
from stages.fileio import write_json  # noqa: E402


@dataclass
class Server:
    name: str
    argv: list[str]
    ready_path: str  # GET answers 200 once the model is loaded
    port: int
    process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def our_server(gguf: Path, threads: int, n_ctx: int) -> Server:
    port = free_port()
    # rerank=false: the reranker (torch) is not part of this comparison; queue 64 so no client is refused.
    argv = [str(Path(sys.executable).parent / "domain-llm"), "serve", f"serve.model={gguf}", f"serve.port={port}",
            "serve.host=127.0.0.1", f"threads={threads}", f"serve.n_ctx={n_ctx}", "serve.rerank=false",
            "serve.queue_size=64"]
    return Server("domain-llm serve", argv, "/api/v1/health", port)


def peer_server(gguf: Path, threads: int, n_ctx: int) -> Server:
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
            "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_ctx", str(n_ctx), "--verbose", "False"]
    return Server("llama_cpp.server", argv, "/v1/models", port)


def start(server: Server, log_dir: Path, timeout_s: float = 180) -> None:
    log = (log_dir / f"{server.port}.log").open("w")
    server.process = subprocess.Popen(server.argv, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir,
                                      env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = (log_dir / f"{server.port}.log").read_text()[-2000:]
            sys.exit(f"{server.name} exited with {server.process.returncode} at start:\n{tail}")
        try:
            response = httpx.get(server.url + server.ready_path, timeout=2)
            if response.status_code == 200:  # ours answers 503 until the model is loaded
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(server)
    sys.exit(f"{server.name} did not become ready within {timeout_s:.0f} s")


def stop(server: Server) -> None:
    """SIGTERM by PID (both servers drain and exit), SIGKILL if one hangs."""
    if server.process is None or server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)


def chat_prompts(gguf: Path) -> tuple[list[str], list[str]]:
    """The questions rendered with the GGUF's own chat template (what a chat client would send), and the
    model's end-of-turn strings, which both servers get as stop strings."""
    from stages.inference import load_engine

    engine = load_engine("gguf", gguf, threads=1, n_ctx=512)
    prompts = [engine.apply_chat_template(chat_messages(q)) for q in QUESTIONS]
    stop_strings = list(engine.contract.stop_strings)
    engine.close()
    return prompts, stop_strings


async def one_level(url: str, prompts: list[str], clients: int, per_client: int, max_tokens: int,
                    stop: list[str]) -> dict:
    """`clients` concurrent clients, each sending `per_client` requests back to back."""
    latencies: list[float] = []
    tokens, texts, failures = 0, {}, 0

    async def client(index: int, http: httpx.AsyncClient) -> None:
        nonlocal tokens, failures
        for k in range(per_client):
            prompt_index = (index * per_client + k) % len(prompts)
            body = {"prompt": prompts[prompt_index], "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0,
                    "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "stop": stop, "seed": 0}
            started = time.perf_counter()
            response = await http.post(url + "/v1/completions", json=body)
            latencies.append(time.perf_counter() - started)
            if response.status_code != 200:
                failures += 1
                continue
            result = response.json()
            tokens += result["usage"]["completion_tokens"]
            texts.setdefault(prompt_index, result["choices"][0]["text"])

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - started
    n = clients * per_client
    return {"requests": n, "failures": failures, "seconds": wall, "completion_tokens": tokens,
            "tokens_per_s": tokens / wall, "requests_per_s": n / wall,
            "p50_latency_s": percentile(latencies, 50), "p95_latency_s": percentile(latencies, 95), "texts": texts}


def requests_per_client(clients: int, quick: bool) -> int:
    # At least 4 requests per level (8 at 4 clients, 16 at 8): enough for a p95 without hour-long runs.
    return 1 if quick else max(2, 4 // clients)


def summarize(runs: list[dict]) -> dict:
    keys = ("tokens_per_s", "requests_per_s", "p50_latency_s", "p95_latency_s")
    out = {k: round(statistics.median(r[k] for r in runs), 3) for k in keys}
    out.update(requests=sum(r["requests"] for r in runs), failures=sum(r["failures"] for r in runs),
               repetitions=len(runs), per_repetition_tokens_per_s=[round(r["tokens_per_s"], 2) for r in runs])
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads, the same for both servers")
    parser.add_argument("--n-ctx", type=int, default=2048)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--concurrency", default="1,4,8")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 1 request per client (a smoke run)")
    parser.add_argument("--cpu-hog", type=int, default=0, help="busy-looping processes kept running while measuring")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "api_throughput.json")
    args = parser.parse_args()
    if not args.gguf.is_file():
        sys.exit(f"error: {args.gguf}: GGUF not found; run `make run` (quantize stage) or pass --gguf FILE")
    repeats = 1 if args.quick else args.repeats
    levels = [int(c) for c in args.concurrency.split(",")]
    record = run_record()
    prompts, stop_strings = chat_prompts(args.gguf)
    servers = [our_server(args.gguf, args.threads, args.n_ctx), peer_server(args.gguf, args.threads, args.n_ctx)]
    runs: dict[str, dict[int, list[dict]]] = {s.name: {c: [] for c in levels} for s in servers}
    hogs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="api-bench.") as tmp:
        try:
            for server in servers:
                start(server, Path(tmp))
                asyncio.run(one_level(server.url, prompts, 1, 2, args.max_tokens, stop_strings))  # warm-up
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.cpu_hog)]
            # Side by side at the finest grain: per level and repetition, one server right after the other,
            # the order alternating, so a load spike on the shared box hits both sides alike.
            for clients in levels:
                for rep in range(repeats):
                    for server in servers if rep % 2 == 0 else servers[::-1]:
                        run = asyncio.run(one_level(server.url, prompts, clients,
                                                    requests_per_client(clients, args.quick), args.max_tokens, stop_strings))
                        runs[server.name][clients].append(run)
                        print(f"rep {rep + 1} {server.name:17s} {clients} clients: {run['tokens_per_s']:6.1f} tok/s "
                              f"{run['requests_per_s']:5.2f} req/s p50 {run['p50_latency_s']:.2f} s "
                              f"p95 {run['p95_latency_s']:.2f} s failures {run['failures']}", flush=True)
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
            for server in servers:
                stop(server)

    ours, peer = servers[0].name, servers[1].name
    rows, ratios = {}, {}
    for clients in levels:
        a, b = summarize(runs[ours][clients]), summarize(runs[peer][clients])
        rows[str(clients)] = {ours: a, peer: b}
        ratios[str(clients)] = {
            "tokens_per_s": round(a["tokens_per_s"] / b["tokens_per_s"], 3),
            "requests_per_s": round(a["requests_per_s"] / b["requests_per_s"], 3),
            "p50_latency": round(a["p50_latency_s"] / b["p50_latency_s"], 3),
            "p95_latency": round(a["p95_latency_s"] / b["p95_latency_s"], 3)}
    # Greedy on the same file: the texts should match; a difference would mean the two did different work.
    first_ours, first_peer = runs[ours][levels[0]][0]["texts"], runs[peer][levels[0]][0]["texts"]
    same = sum(first_ours.get(i) == first_peer.get(i) for i in first_peer)
    result = {"name": "api_throughput", **finish_record(record), "gguf": str(args.gguf), "threads": args.threads,
              "cpu_hog_processes": args.cpu_hog,
              "max_tokens": args.max_tokens, "repetitions": repeats, "prompts": len(prompts),
              "server_commands": {s.name: " ".join(s.argv) for s in servers},
              "levels": rows, "ratios_ours_vs_llama_cpp_server": ratios,
              "identical_texts_at_1_client": f"{same}/{len(first_peer)}"}
    write_json(args.output, result)
    print("ours / llama_cpp.server (tokens/s; latency ratio < 1 is better):")
    for clients, r in ratios.items():
        print(f"  {clients} clients: throughput {r['tokens_per_s']:.2f}x, p50 latency {r['p50_latency']:.2f}x, "
              f"p95 latency {r['p95_latency']:.2f}x")
    print(f"identical greedy texts: {same}/{len(first_peer)} -> {args.output}")


if __name__ == "__main__":
    main()
