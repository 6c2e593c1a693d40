"""/api/v1/ask vs /api/v1/generate latency at the same max_tokens, side by side against one real server (the
published GGUF and models/index), one request at a time; writes bench/results/ask_latency.{json,md}.

    python bench/ask_latency.py                                        # models/gguf/model-q4_k_m.gguf + models/index
    python bench/ask_latency.py --questions 30 --max-tokens 64 --threads 2

The questions are the held-out-facts split's (data/processed/<domain>/test_facts.jsonl). Each question is sent to
both endpoints back to back (greedy), so both see the same machine state; the first of each is a warm-up. The
server runs as configured by default: the trained reranker (models/reranker) reorders the retrieved passages
(`--no-rerank`: hybrid retrieval alone).
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.fileio import write_json, write_text  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def start_server(gguf: Path, index: Path, port: int, threads: int, rerank: bool) -> subprocess.Popen:
    log = tempfile.NamedTemporaryFile("w", prefix="ask-bench-", suffix=".log", delete=False)
    process = subprocess.Popen([sys.executable, "-m", "stages.cli", "serve", f"threads={threads}",
                                f"serve.model={gguf}", f"serve.index={index}", f"serve.port={port}",
                                f"serve.rerank={str(rerank).lower()}", f"serve.ask_rerank={str(rerank).lower()}",
                                "serve.log_requests=false"], cwd=ROOT, stdout=log,
                               stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/api/v1/health", timeout=5).status_code == 200:
                return process
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    process.kill()
    raise SystemExit(f"server did not start; see {log.name}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--index", type=Path, default=ROOT / "models" / "index")
    parser.add_argument("--test", type=Path, default=ROOT / "data" / "processed" / "healthcare" / "test_facts.jsonl")
    parser.add_argument("--questions", type=int, default=30)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--top-k", type=int, default=None, help="passages per answer (default: serve.ask_top_k)")
    parser.add_argument("--no-rerank", action="store_true", help="hybrid retrieval without the reranker")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "ask_latency.json")
    args = parser.parse_args()
    if args.top_k is None:
        from stages.config import compose

        args.top_k = int(compose().serve.ask_top_k)
    questions = [json.loads(line)["instruction"] for line in args.test.read_text().splitlines()][:args.questions + 1]
    process = start_server(args.gguf.resolve(), args.index.resolve(), args.port, args.threads, not args.no_rerank)
    # what the server said it serves, recorded with the figures (the index and reranker must really be there)
    health = httpx.get(f"http://127.0.0.1:{args.port}/api/v1/health", timeout=10).json()
    loaded = {"models": [m["id"] for m in httpx.get(f"http://127.0.0.1:{args.port}/v1/models").json()["data"]],
              "components": {name: c["state"] for name, c in health["components"].items()}}
    if loaded["components"]["index"] != "ready":
        process.kill()
        raise SystemExit(f"error: the server's index is {loaded['components']['index']}: {health.get('detail')}")
    reranked = []
    url = f"http://127.0.0.1:{args.port}/api/v1"
    seconds: dict[str, list[float]] = {"generate": [], "ask": []}
    tokens: dict[str, list[int]] = {"generate": [], "ask": []}
    retrieval_s: list[float] = []
    try:
        with httpx.Client(timeout=300) as client:
            for i, question in enumerate(questions):
                for endpoint, body in (("generate", {"prompt": question}),
                                       ("ask", {"question": question, "top_k": args.top_k})):
                    started = time.perf_counter()
                    response = client.post(f"{url}/{endpoint}", json={**body, "max_tokens": args.max_tokens,
                                                                       "temperature": 0})
                    elapsed = time.perf_counter() - started
                    response.raise_for_status()
                    if i == 0:
                        continue  # warm-up (the first /ask loads MiniLM for the query embedding)
                    result = response.json()
                    seconds[endpoint].append(elapsed)
                    tokens[endpoint].append(result.get("tokens_generated") or result["usage"]["completion_tokens"])
                    if endpoint == "ask":
                        retrieval_s.append(result["retrieval"]["seconds"])
                        reranked.append(result["retrieval"]["reranked"])
    finally:
        process.terminate()
        process.wait(60)
    summary = {name: {"p50_s": round(statistics.median(v), 3), "p95_s": round(percentile(v, 0.95), 3),
                      "mean_completion_tokens": round(statistics.mean(tokens[name]), 1)}
               for name, v in seconds.items()}
    summary["ask"]["retrieval_p50_s"] = round(statistics.median(retrieval_s), 4)
    ratios = {"p50": round(summary["ask"]["p50_s"] / summary["generate"]["p50_s"], 2),
              "p95": round(summary["ask"]["p95_s"] / summary["generate"]["p95_s"], 2)}
    command = " ".join(["python", "bench/ask_latency.py", *sys.argv[1:]])
    result = {"command": command, "machine": platform.processor() or platform.machine(), "questions": len(retrieval_s),
              "max_tokens": args.max_tokens, "top_k": args.top_k, "threads": args.threads,
              "reranked": all(reranked), "server_loaded": loaded, "results": summary,
              "ask_over_generate": ratios}
    write_json(args.output, result)
    table = ["| endpoint | p50 s | p95 s | mean completion tokens |", "|---|---:|---:|---:|"]
    table += [f"| /api/v1/{name} | {s['p50_s']} | {s['p95_s']} | {s['mean_completion_tokens']} |"
              for name, s in summary.items()]
    write_text(args.output.with_suffix(".md"), f"# /api/v1/ask vs /api/v1/generate\n\n```\n{command}\n```\n\n"
               f"{len(retrieval_s)} held-out-facts questions, one at a time, greedy, max_tokens {args.max_tokens}, top_k "
               f"{args.top_k}, {args.threads} threads. Retrieval (hybrid BM25 + MiniLM"
               f"{', then the trained reranker over the top 20' if all(reranked) else ''}) p50 "
               f"{summary['ask']['retrieval_p50_s']} s.\n\n" + "\n".join(table) +
               f"\n\nask / generate: p50 {ratios['p50']}x, p95 {ratios['p95']}x (the grounded prompt is longer: "
               "the passages are prompt tokens).\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
