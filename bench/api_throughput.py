"""API throughput and latency: our server (`domain-llm serve`) vs `python -m llama_cpp.server` and llama.cpp's C++
`llama-server` on the same GGUF, same prompts, greedy, same thread count, side by side in one run. Every
(max_tokens, clients) pair is one level (default 48 and 256 tokens x 1, 4, 8, 16 clients). Prints completion
tokens/s, requests/s, p50/p95 latency, p50/p95 time to first token and the ours/peer ratios; writes
bench/results/api_throughput.json (with the exact command) and a markdown table next to it (.md).

    python bench/api_throughput.py --gguf models/gguf/model-q4_k_m.gguf
    python bench/api_throughput.py --gguf "$(python -c 'from stages.base.materialize import smollm2_gguf_path as p; print(p())')" --quick
    python bench/api_throughput.py --gguf FILE --llama-server /path/to/llama-server --parallel 4 --max-tokens 48
    python bench/api_throughput.py --gguf FILE --no-llama-server --concurrency 1,8
    python bench/api_throughput.py --adapter legal --concurrency 1,8 --max-tokens 48   # the adapter path vs llama-server --lora
    python bench/api_throughput.py --native --concurrency 1,8 --max-tokens 48   # all three on llama.cpp for this CPU

llama-server is built once from the llama.cpp sources that the installed llama-cpp-python was built from (its
sdist's vendor/llama.cpp) into --peer-cache (default ~/.cache/domain-llm/peers, env DOMAIN_LLM_PEER_CACHE); see
bench/llama_server_peer.py. --parallel N (default 8) goes to ours as serve.parallel=N and to llama-server as
-np N (each slot gets --n-ctx tokens); llama_cpp.server has no such option and serves one request at a time.

All servers run as subprocesses on 127.0.0.1 (free ports) and are stopped by PID at the end. All get the OpenAI
`/v1/completions` request with the same chat-templated prompt, max_tokens, temperature 0 and neutral sampling
(top_k 0, min_p 0, repeat_penalty 1: every server gets the same sampling; ours would otherwise apply its default
serve.repeat_penalty, 1.1),
with the model's end-of-turn tokens (its chat contract) as stop strings, streamed (`"stream": true`,
`stream_options.include_usage`): time to first token is the time until the first SSE chunk with non-empty text.
Time per output token (TPOT) is (latency - TTFT) / (tokens - 1) of each request with 2+ tokens: request latency
grows with the answer's length, and greedy answers can differ in length between servers (batch-dependent
rounding), so the p95 of TPOT compares the per-token work like for like; tokens/request says how long answers were.
Completion tokens are counted the same way for every server: the streamed text tokenized with the GGUF's own
tokenizer. The servers' own counts differ (llama-server's usage counts the end-of-turn token it sampled, ours does
not; llama_cpp.server sends no usage in stream mode, only text chunks), so each server's own count is kept
beside it as `reported_tokens_per_s`. The
clients are closed-loop: each sends its next request when the previous one has finished. For each level, each
repetition runs one server right after the other (rotating which goes first); medians over repetitions are
reported. Before measuring, each server answers all prompts at 1 client (the warm-up) and ours also at 8
clients: the greedy texts of ours vs each peer, and of ours at 8 vs 1 clients, should be identical.

Threads: llama.cpp threads spin-wait on each other, so on an oversubscribed box 2 threads can be 10x slower
than 1 (measured here: 1 vs 10 tok/s while other jobs ran). Pass --threads 1 when the load average is above
the core count; the same value always goes to every server. --cpu-hog N keeps N busy-looping processes
running during the measurements, to see how each server copes with a neighbour on the CPU:

    python bench/api_throughput.py --threads 2 --concurrency 1 --cpu-hog 1 --output bench/results/api_throughput_hog.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.llama_server_peer import (  # noqa: E402
    DEFAULT_CACHE,
    INSTALLED_BUILD,
    find_or_build,
    installed_build_has_avx512,
    runtime_build,
    use_native_build,
)
from bench.run_info import (  # noqa: E402
    QUESTIONS,
    RESULTS_DIR,
    chat_messages,
    finish_record,
    percentile,
    run_record,
)
from bench.servers import (  # noqa: E402
    OURS,
    baseline_server,
    cpp_peer,
    our_server,
    python_peer,
    start,
    stop,
)
from stages.fileio import write_json  # noqa: E402


def chat_prompts(gguf: Path) -> tuple[list[str], list[str]]:
    """The questions rendered with the GGUF's own chat template (what a chat client would send), and the
    model's end-of-turn strings, which every server gets as stop strings."""
    from stages.inference import load_engine

    engine = load_engine("gguf", gguf, threads=1, n_ctx=512)
    prompts = [engine.apply_chat_template(chat_messages(q)) for q in QUESTIONS]
    stop_strings = list(engine.contract.stop_strings)
    engine.close()
    return prompts, stop_strings


def token_counter(gguf: Path) -> Callable[[str], int]:
    """Tokens in a completion's text by the GGUF's own tokenizer: one count for every server."""
    import llama_cpp

    vocab = llama_cpp.Llama(model_path=str(gguf), vocab_only=True, verbose=False)
    return lambda text: len(vocab.tokenize(text.encode("utf-8"), add_bos=False, special=False)) if text else 0


async def one_request(http: httpx.AsyncClient, url: str, body: dict) -> dict:
    """One streamed completion: latency, time to the first non-empty text chunk, text (and when each piece of it
    arrived), completion tokens (from the usage chunk, else the number of text chunks, and `usage` says which).
    A keep-alive connection the server closed before answering is retried once on a new one (llama-server's
    HTTP library does that now and then between requests); the time lost counts against the server."""
    started = time.perf_counter()
    for attempt in (1, 2):
        first, pieces, arrived, usage_tokens, ok, reason = None, [], [], None, False, ""
        try:
            async with http.stream("POST", url + "/v1/completions", json=body) as response:
                ok = response.status_code == 200
                reason = "" if ok else f"HTTP {response.status_code}"
                async for line in response.aiter_lines():
                    if not ok or not line.startswith("data:") or (data := line[5:].strip()) == "[DONE]":
                        continue
                    chunk = json.loads(data)
                    if "error" in chunk:
                        ok, reason = False, f"error event: {str(chunk['error'])[:120]}"
                    text = (chunk.get("choices") or [{}])[0].get("text") or ""
                    if text:
                        first = first or time.perf_counter()
                        pieces.append(text)
                        arrived.append(time.perf_counter())
                    if (chunk.get("usage") or {}).get("completion_tokens") is not None:
                        usage_tokens = chunk["usage"]["completion_tokens"]
        except httpx.RemoteProtocolError as e:  # no response at all: a closed keep-alive connection
            ok, reason = False, f"{type(e).__name__}: {str(e)[:120]}"
            if attempt == 1 and "without sending a response" in str(e):
                continue
        except httpx.TransportError as e:  # the server closed the stream early: a failed request
            ok, reason = False, f"{type(e).__name__}: {str(e)[:120]}"
        break
    latency = time.perf_counter() - started
    return {"ok": ok, "reason": reason, "latency": latency, "ttft": (first - started) if first else latency,
            "text": "".join(pieces), "pieces": pieces, "arrived": arrived, "retried": attempt == 2,
            "tokens": len(pieces) if usage_tokens is None else usage_tokens, "usage": usage_tokens is not None}


def text_by(result: dict, moment: float) -> str:
    """The part of a request's text that had arrived by `moment`."""
    return "".join(piece for piece, at in zip(result["pieces"], result["arrived"], strict=True) if at <= moment)


async def one_level(url: str, prompts: list[str], clients: int, per_client: int, max_tokens: int,
                    stop: list[str], count: Callable[[str], int], fields: dict | None = None) -> dict:
    """`clients` concurrent closed-loop clients, each sending `per_client` requests back to back."""
    results: list[dict] = []
    texts: dict[int, str] = {}
    client_done: list[float] = []

    async def client(index: int, http: httpx.AsyncClient) -> None:
        for k in range(per_client):
            prompt_index = (index * per_client + k) % len(prompts)
            body = {"prompt": prompts[prompt_index], "max_tokens": max_tokens, "temperature": 0.0, "top_p": 1.0,
                    "top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0, "stop": stop, "seed": 0, "stream": True,
                    "stream_options": {"include_usage": True}, **(fields or {})}
            result = await one_request(http, url, body)
            results.append(result)
            if result["ok"]:
                texts.setdefault(prompt_index, result["text"])
        client_done.append(time.perf_counter())

    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(timeout=300, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(*(client(i, http) for i in range(clients)))
        wall = time.perf_counter() - started
    ok = [r for r in results if r["ok"]]
    lengths = [count(r["text"]) for r in ok]
    tokens = sum(lengths)
    # Sustained: tokens streamed while every client was still sending (until the first one had sent all its
    # requests). The rest of the run is the drain, when fewer clients are left than the level says.
    full_until = min(client_done)
    sustained = sum(count(text_by(r, full_until)) for r in ok)
    tpots = [(r["latency"] - r["ttft"]) / (n - 1) for r, n in zip(ok, lengths, strict=True) if n > 1]
    latencies, ttfts = [r["latency"] for r in results], [r["ttft"] for r in results]
    return {"requests": len(results), "failures": len(results) - len(ok),
            "failure_reasons": sorted({r["reason"] for r in results if not r["ok"]}), "seconds": wall, "completion_tokens": tokens,
            "tokens_per_s": tokens / wall, "sustained_tokens_per_s": sustained / (full_until - started),
            "sustained_share_of_run": (full_until - started) / wall, "retried": sum(r["retried"] for r in results),
            "reported_tokens_per_s": sum(r["tokens"] for r in ok) / wall,
            "requests_per_s": len(results) / wall,
            "p50_latency_s": percentile(latencies, 50), "p95_latency_s": percentile(latencies, 95),
            "p50_ttft_s": percentile(ttfts, 50), "p95_ttft_s": percentile(ttfts, 95),
            "p50_tpot_s": percentile(tpots, 50) if tpots else 0.0, "p95_tpot_s": percentile(tpots, 95) if tpots else 0.0,
            "tokens_per_request": tokens / len(ok) if ok else 0.0,
            "without_usage": sum(not r["usage"] for r in ok), "texts": texts}


def all_prompts(url: str, prompts: list[str], clients: int, max_tokens: int, stop: list[str],
                fields: dict | None = None) -> dict[int, str]:
    """Greedy texts for every prompt, sent by `clients` concurrent clients."""
    per_client = math.ceil(len(prompts) / clients)
    return asyncio.run(one_level(url, prompts, clients, per_client, max_tokens, stop, len, fields))["texts"]


def requests_per_client(clients: int, quick: bool) -> int:
    # At least 16 requests per level, 4 per client from 4 clients up: enough for a p95 without hour-long runs.
    return 1 if quick else max(4, 16 // clients)


def summarize(runs: list[dict]) -> dict:
    keys = ("tokens_per_s", "sustained_tokens_per_s", "sustained_share_of_run", "reported_tokens_per_s", "requests_per_s", "p50_latency_s", "p95_latency_s", "p50_ttft_s",
            "p95_ttft_s", "p50_tpot_s", "p95_tpot_s", "tokens_per_request")
    out = {k: round(statistics.median(r.get(k, 0.0) for r in runs), 4) for k in keys}
    out.update(requests=sum(r["requests"] for r in runs), failures=sum(r["failures"] for r in runs),
               retried=sum(r.get("retried", 0) for r in runs),
               repetitions=len(runs), per_repetition_tokens_per_s=[round(r["tokens_per_s"], 2) for r in runs],
               without_usage=sum(r["without_usage"] for r in runs),
               failure_reasons=sorted({x for r in runs for x in r["failure_reasons"]}))
    return out


def ratios(a: dict, b: dict) -> dict:
    def ratio(key: str) -> float | None:
        return round(a[key] / b[key], 3) if b[key] else None
    return {"tokens_per_s": ratio("tokens_per_s"), "sustained_tokens_per_s": ratio("sustained_tokens_per_s"),
            "p95_latency": ratio("p95_latency_s"),
            "p95_ttft": ratio("p95_ttft_s"), "p95_tpot": ratio("p95_tpot_s")}


def identical(a: dict[int, str], b: dict[int, str]) -> str:
    return f"{sum(a.get(i) == text for i, text in b.items())}/{len(b)}"


def markdown(result: dict) -> str:
    peers = [name for name in result["server_commands"] if name != OURS]
    lines = ["# API throughput", "", "```", result["command"], "```", "",
             f"llama.cpp for every server: {result.get('llama_cpp_build', INSTALLED_BUILD)}. "
             f"{result['threads']} threads, parallel {result['parallel']}, {result['repetitions']} repetition(s), "
             "medians; latency and TTFT in seconds. tokens/s: completion text tokenized with the GGUF's "
             "tokenizer, the same count for every server; own count: each server's own (from "
             + ", ".join(f"{k}: {v}" for k, v in result["tokens_counted_from"].items()) + ").", "",
             "Sustained tokens/s: the tokens streamed while every client was still sending (until the first client "
             "had sent all its requests), over that time; the rest of the run, the drain, has fewer clients than "
             "the level (share: that time over the run).", "",
             "| max_tokens | clients | server | tokens/s | sustained tok/s (share) | own count tok/s | requests/s "
             "| tokens/request | p50 latency | p95 latency | p50 TTFT | p95 TTFT | p95 TPOT ms | failures (retried) |",
             "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for level in result["levels"]:
        for name, s in level["servers"].items():
            lines.append(f"| {level['max_tokens']} | {level['clients']} | {name} | {s['tokens_per_s']:.1f} | "
                         f"{s.get('sustained_tokens_per_s', 0):.1f} ({s.get('sustained_share_of_run', 0):.0%}) | "
                         f"{s.get('reported_tokens_per_s', 0):.1f} | {s['requests_per_s']:.2f} | "
                         f"{s.get('tokens_per_request', 0):.1f} | {s['p50_latency_s']:.2f} | {s['p95_latency_s']:.2f} | "
                         f"{s['p50_ttft_s']:.2f} | {s['p95_ttft_s']:.2f} | {1000 * s.get('p95_tpot_s', 0):.1f} | "
                         f"{s['failures']} ({s.get('retried', 0)}) |")
    lines += ["", "Ours / peer (tokens/s: > 1 is better; p95 latency, TTFT and TPOT: < 1 is better):", "",
              "| max_tokens | clients | peer | tokens/s | sustained tok/s | p95 latency | p95 TTFT | p95 TPOT |",
              "|---:|---:|---|---:|---:|---:|---:|---:|"]
    for level in result["levels"]:
        for peer in peers:
            r = level["ratios"][peer]
            lines.append(f"| {level['max_tokens']} | {level['clients']} | {peer} | " + " | ".join(
                "-" if r.get(k) is None else f"{r[k]:.2f}x"
                for k in ("tokens_per_s", "sustained_tokens_per_s", "p95_latency", "p95_ttft", "p95_tpot")) + " |")
    lines += ["", f"Identical greedy texts ({result['identity_max_tokens']} tokens), ours vs peer at 1 client: "
              + ", ".join(f"{k} {v}" for k, v in result["identical_texts_at_1_client"].items())
              + "; each server at 8 vs 1 clients: "
              + ", ".join(f"{k} {v}" for k, v in result["identical_8_vs_1_clients"].items()) + ".", ""]
    counters = result.get("ours_batching_counters") or {}
    if counters.get("prompt_tokens"):
        lines += [f"Ours over the whole run: {counters['sequences']} sequences, {counters['prompt_tokens']} prompt "
                  f"tokens, of which {counters['prefix_tokens_reused']} "
                  f"({counters['prefix_tokens_reused'] / counters['prompt_tokens']:.0%}) came from the shared prefix "
                  f"or a slot's prompt cache instead of being computed; {counters['steps']} decode steps.", ""]
    return "\n".join(lines)


def check_same_work(servers: list, adapter: str | None = None, adapter_file: Path | None = None) -> None:
    """The peers serve the GGUF as it is: every server must list exactly one model, and ours must have loaded no
    adapter (which would change its speed), else the comparison is not of the same work. With `adapter`: ours
    lists its model id with its adapters component ready, llama-server lists its file."""
    if adapter:
        for server in servers:
            if server.name == OURS:
                ok = (f"domain-llm-{adapter}" in server.loaded["models"]
                      and server.loaded["components"].get("adapters") == "ready")
            else:
                listed = httpx.get(server.url + "/lora-adapters", timeout=10).json()
                server.loaded["lora_adapters"] = listed
                ok = any(Path(a["path"]).resolve() == adapter_file.resolve() for a in listed)
            if not ok:
                sys.exit(f"error: {server.name} does not serve the {adapter} adapter: {server.loaded}")
        return
    for server in servers:
        models = server.loaded["models"]
        if len(models) != 1:
            sys.exit(f"error: {server.name} serves {models}, not one model; the bench compares one model each")
        adapters = server.loaded.get("components", {}).get("adapters")
        if adapters not in (None, "disabled"):
            sys.exit(f"error: {server.name} has adapters {adapters}; it must serve the base model alone here")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--threads", type=int, default=2, help="llama.cpp threads, the same for every server")
    parser.add_argument("--n-ctx", type=int, default=2048, help="context per sequence (per slot)")
    parser.add_argument("--parallel", type=int, default=8,
                        help="sequences decoded together: ours serve.parallel, llama-server -np")
    parser.add_argument("--max-tokens", default="48,256", help="comma list")
    parser.add_argument("--flash-attn", choices=("on", "off"), default="on",
                        help="llama.cpp flash attention, the same for every server (a --baseline-ref server keeps "
                        "whatever that version did)")
    parser.add_argument("--concurrency", default="1,4,8,16", help="comma list of concurrent clients")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1 repetition, 1 request per client (a smoke run)")
    parser.add_argument("--cpu-hog", type=int, default=0, help="busy-looping processes kept running while measuring")
    parser.add_argument("--llama-server", type=Path, help="use this llama-server binary instead of the cached build")
    parser.add_argument("--no-llama-server", action="store_true", help="leave llama-server out")
    parser.add_argument("--baseline-ref", help="also serve our server as of this git ref (a temporary worktree), "
                        "e.g. the commit before a serving change")
    parser.add_argument("--peer-cache", type=Path, default=DEFAULT_CACHE,
                        help="where llama-server is built once (env DOMAIN_LLM_PEER_CACHE)")
    parser.add_argument("--native", action="store_true",
                        help="every server on llama.cpp built for this CPU (GGML_NATIVE=ON, built once into the "
                        "peer cache): llama-server, and ours and llama_cpp.server through LLAMA_CPP_LIB_PATH")
    parser.add_argument("--adapter", help="a domain of --adapter-dir: every request asks for its adapter (ours: "
                        "every published adapter loaded, model domain-llm-<domain>; llama-server: --lora for each, "
                        "the request's `lora` field); llama_cpp.server and --baseline-ref are left out")
    parser.add_argument("--adapter-dir", type=Path, default=ROOT / "models" / "adapters")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "api_throughput.json")
    args = parser.parse_args()
    adapter_files = sorted((args.adapter_dir / d / "adapter.gguf").resolve()
                           for d in sorted(p.parent.name for p in args.adapter_dir.glob("*/manifest.json")))
    if args.adapter and (args.adapter_dir / args.adapter / "adapter.gguf").resolve() not in adapter_files:
        sys.exit(f"error: no adapter {args.adapter!r} published in {args.adapter_dir}; run `make run`")
    if args.adapter and args.baseline_ref:
        sys.exit("error: --adapter compares the adapter path with llama-server; leave out --baseline-ref")
    args.gguf = args.gguf.resolve()  # the servers run in a temp directory: a relative path would not reach them
    if not args.gguf.is_file():
        sys.exit(f"error: {args.gguf}: GGUF not found; run `make run` (quantize stage) or pass --gguf FILE")
    repeats = 1 if args.quick else args.repeats
    max_tokens = [int(m) for m in args.max_tokens.split(",")]
    levels = [(m, int(c)) for m in max_tokens for c in args.concurrency.split(",")]
    identity_tokens = min(max_tokens)
    record = run_record()
    if args.native:
        if args.llama_server or args.no_llama_server:
            sys.exit("error: --native builds and runs its own llama-server; leave out --llama-server/--no-llama-server")
        args.llama_server = use_native_build(args.peer_cache.expanduser())
    elif not args.llama_server and not args.no_llama_server and installed_build_has_avx512():
        print("warning: the installed llama-cpp-python is a native (AVX-512) build and the cached llama-server "
              "a portable one; add --native to compare like for like", flush=True)
    record["llama_cpp_build"] = runtime_build()
    servers = [our_server(args.gguf, args.threads, args.n_ctx, args.parallel, args.flash_attn, args.adapter)]
    if not args.adapter:  # it serves one model as it is: no per-request adapter
        servers.append(python_peer(args.gguf, args.threads, args.n_ctx, args.flash_attn))
    if not args.no_llama_server:
        binary = args.llama_server or find_or_build(args.peer_cache.expanduser())
        adapter_file = (args.adapter_dir / args.adapter / "adapter.gguf").resolve() if args.adapter else None
        servers.append(cpp_peer(binary, args.gguf, args.threads, args.n_ctx, args.parallel, args.flash_attn,
                                adapter_files if args.adapter else [],
                                adapter_files.index(adapter_file) if args.adapter else None))
    prompts, stop_strings = chat_prompts(args.gguf)
    count = token_counter(args.gguf)
    runs: dict[str, dict[tuple[int, int], list[dict]]] = {s.name: {level: [] for level in levels} for s in servers}
    texts_1: dict[str, dict[int, str]] = {}
    batching: dict = {}
    hogs: list[subprocess.Popen] = []
    with tempfile.TemporaryDirectory(prefix="api-bench.") as tmp:
        if args.baseline_ref:
            servers.append(baseline_server(args.baseline_ref, args.gguf, args.threads, args.n_ctx, Path(tmp)))
            runs[servers[-1].name] = {level: [] for level in levels}
        try:
            for server in servers:
                start(server, Path(tmp))
                # Warm-up and greedy identity: every prompt at 1 client; ours also at 8 (batched) clients.
                texts_1[server.name] = all_prompts(server.url, prompts, 1, identity_tokens, stop_strings,
                                                   server.request_fields)
            check_same_work(servers, args.adapter,
                            (args.adapter_dir / args.adapter / "adapter.gguf") if args.adapter else None)
            # Every server at 8 clients too: a batching server may round differently than alone.
            texts_8 = {s.name: all_prompts(s.url, prompts, 8, identity_tokens, stop_strings, s.request_fields)
                       for s in servers}
            hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.cpu_hog)]
            # Side by side at the finest grain: per level and repetition, one server right after the other,
            # the order rotating, so a load spike on the shared box hits every side alike.
            for index, (tokens, clients) in enumerate(levels):
                for rep in range(repeats):
                    turn = (index + rep) % len(servers)
                    for server in servers[turn:] + servers[:turn]:
                        run = asyncio.run(one_level(server.url, prompts, clients, requests_per_client(
                            clients, args.quick), tokens, stop_strings, count, server.request_fields))
                        runs[server.name][(tokens, clients)].append(run)
                        print(f"rep {rep + 1} {server.name:16s} {tokens:4d} tokens {clients:2d} clients: "
                              f"{run['tokens_per_s']:6.1f} tok/s (sustained {run['sustained_tokens_per_s']:.1f}) "
                              f"{run['requests_per_s']:5.2f} req/s "
                              f"latency p50 {run['p50_latency_s']:.2f} p95 {run['p95_latency_s']:.2f} s "
                              f"TTFT p50 {run['p50_ttft_s']:.2f} p95 {run['p95_ttft_s']:.2f} s "
                              f"TPOT p95 {1000 * run['p95_tpot_s']:.1f} ms {run['tokens_per_request']:.0f} tok/req "
                              f"failures {run['failures']} (retried {run['retried']})", flush=True)
            # What the shared prompt prefix and the slots' prompt caches saved over the whole run.
            batching = httpx.get(servers[0].url + "/api/v1/model/info", timeout=10).json().get("batching", {})
        finally:
            for hog in hogs:
                hog.kill()
                hog.wait()
            for server in servers:
                stop(server)
            if args.baseline_ref:
                subprocess.run(["git", "-C", str(ROOT), "worktree", "remove", "--force", str(Path(tmp) / "baseline")],
                               check=False)

    peers = [s.name for s in servers[1:]]
    rows = []
    for tokens, clients in levels:
        summaries = {s.name: summarize(runs[s.name][(tokens, clients)]) for s in servers}
        rows.append({"max_tokens": tokens, "clients": clients, "servers": summaries,
                     "ratios": {peer: ratios(summaries[OURS], summaries[peer]) for peer in peers}})
    # What each server's own count (reported_tokens_per_s) was taken from; tokens_per_s is always the text
    # tokenized by the GGUF's tokenizer.
    counted = {s.name: "content chunks (no usage chunk in stream mode)"
               if any(r["without_usage"] for level in runs[s.name].values() for r in level) else "usage"
               for s in servers}
    result = {"name": "api_throughput", **finish_record(record), "argv": sys.argv, "gguf": str(args.gguf),
              "threads": args.threads, "n_ctx": args.n_ctx, "parallel": args.parallel,
              "flash_attn": args.flash_attn,
              "cpu_hog_processes": args.cpu_hog, "max_tokens": max_tokens, "repetitions": repeats,
              "prompts": len(prompts), "server_commands": {s.name: " ".join(s.argv) for s in servers},
              "adapter": args.adapter, "request_fields": {s.name: s.request_fields for s in servers},
              "tokens_counted_from": counted, "levels": rows, "identity_max_tokens": identity_tokens,
              "identical_texts_at_1_client": {peer: identical(texts_1[OURS], texts_1[peer]) for peer in peers},
              "ours_identical_8_vs_1": identical(texts_8[OURS], texts_1[OURS]),
              "identical_8_vs_1_clients": {s.name: identical(texts_8[s.name], texts_1[s.name]) for s in servers},
              "ours_batching_counters": batching, "servers_loaded": {s.name: s.loaded for s in servers}}
    write_json(args.output, result)
    args.output.with_suffix(".md").write_text(markdown(result))
    print("ours / peer (tokens/s > 1 and latency < 1 are better):")
    for row in rows:
        for peer, r in row["ratios"].items():
            print(f"  {row['max_tokens']:4d} tokens {row['clients']:2d} clients vs {peer:16s}: throughput "
                  f"{r['tokens_per_s']}x (sustained {r['sustained_tokens_per_s']}x), p95 latency {r['p95_latency']}x, p95 TTFT {r['p95_ttft']}x, "
                  f"p95 TPOT {r['p95_tpot']}x")
    print(f"identical greedy texts at 1 client: {result['identical_texts_at_1_client']}; 8 vs 1 clients: "
          f"{result['identical_8_vs_1_clients']} -> {args.output} and {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
