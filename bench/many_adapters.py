"""Many adapters in one server: 16 and 64 random LoRA GGUFs of the pipeline's rank over the base, against the same
server with none: start-up time, memory, and throughput with the clients spread over 16 adapters vs all on one.

    python bench/many_adapters.py                    # models/gguf/model-q4_k_m.gguf, adapters shaped like models/adapters/legal
    python bench/many_adapters.py --counts 16,64 --clients 8 --requests 32

The adapters are made here (seeded): the tensors, names, rank and alpha of a published adapter
(`--template`, models/adapters/<domain>/adapter.gguf), values drawn at random with each tensor's own standard
deviation, and a domain name and routing examples in the `domain_llm.*` keys, so the server serves and routes
them like published ones. Each server is `domain-llm serve` in its default config (reranker, index, UI: what
`make serve` starts; serve.resident_adapters 16: with 64 served, 16 are in llama.cpp at a time and the others
load on their first request) with serve.adapters naming the files, started one at a time: start-up is the wall time from
the process start to /api/v1/health answering 200; memory is VmRSS after the loads. Loads (8 closed-loop clients,
greedy, repeat_penalty 1, 48 max tokens, the legal test questions): all requests to one adapter, and request i
to adapter i mod 16.

Preconditions, checked: each server lists exactly its adapters (/v1/models) and every request succeeded; the
server's adapter switches and lanes are recorded with the figures. Writes bench/results/many_adapters.json (+ .md).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
import numpy as np  # noqa: E402

from bench.api_throughput import token_counter  # noqa: E402
from bench.domain_serving import bodies, load, ours, require, rss_mb  # noqa: E402
from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from bench.servers import start, stop  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_text  # noqa: E402

SPREAD = 16


def random_adapters(template: Path, out: Path, count: int, seed: int = 0) -> dict[str, Path]:
    """`count` LoRA GGUFs shaped like `template` with random values; {domain: file}."""
    import gguf

    from stages.inference.adapters import add_adapter_facts
    from stages.inference.gguf import GGUFFile

    reader = GGUFFile(template)
    alpha = float(reader.fields["adapter.lora.alpha"].contents())
    arch = reader.fields["general.architecture"].contents()
    rng = np.random.default_rng(seed)
    files = {}
    for i in range(count):
        domain = f"rand-{i:02d}"
        path = out / f"{domain}.gguf"
        writer = gguf.GGUFWriter(path, arch=arch)
        writer.add_type("adapter")
        writer.add_string("adapter.type", "lora")
        writer.add_float32("adapter.lora.alpha", alpha)
        add_adapter_facts(writer, domain, None, [f"question {i} about topic {i}", f"what is thing {i}?"])
        for tensor in reader.tensors:
            values = np.asarray(tensor.data, dtype=np.float32)
            writer.add_tensor(tensor.name, (rng.standard_normal(values.shape) * values.std()).astype(np.float16))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()
        files[domain] = path
    return files


def prompts(gguf_path: Path, n: int) -> tuple[list[str], list[str]]:
    from stages.inference import load_engine

    engine = load_engine("gguf", gguf_path, threads=1, n_ctx=512)
    records = read_jsonl(ROOT / "data" / "processed" / "legal" / "test.jsonl")[:n]
    rendered = [engine.apply_chat_template([{"role": "user", "content": next(
        m["content"] for m in r["messages"] if m["role"] == "user")}]) for r in records]
    stops = list(engine.contract.stop_strings)
    engine.close()
    return rendered, stops


def markdown(result: dict) -> str:
    base = result["servers"]["0"]
    lines = ["# Many adapters in one server", "", "```", " ".join(result["argv"]), "```", "",
             f"Random LoRA GGUFs shaped like `{result['template']}` (rank {result['rank']}, "
             f"{result['adapter_mb']} MB each); {result['clients']} clients, {result['max_tokens']} max tokens, "
             f"{result['requests']} requests per load; the default serve config (lanes {base['lanes']}).", "",
             "| adapters | start-up (s) | VmRSS (MB) | adapter files (MB) | RSS / (base RSS + files) | one adapter tok/s "
             f"| spread over {SPREAD} tok/s | spread / one |", "|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for count, row in result["servers"].items():
        lines.append(f"| {count} | {row['startup_s']} | {row['rss_mb']} | {row['files_mb']} | "
                     f"{row.get('rss_over_budget', '')} | {row.get('one', {}).get('tokens_per_s', '')} | "
                     f"{row.get('spread', {}).get('tokens_per_s', '')} | {row.get('spread_over_one', '')} |")
    lines += ["", "RSS / (base RSS + files): the server's VmRSS over the base server's plus the adapter files (the "
              "target is at most 1.15).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--template", type=Path, default=ROOT / "models" / "adapters" / "legal" / "adapter.gguf")
    parser.add_argument("--counts", default="16,64")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=48)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--resident", type=int, help="serve.resident_adapters for every server (default: the config's)")
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "many_adapters.json")
    args = parser.parse_args()
    if not args.gguf.is_file() or not args.template.is_file():
        sys.exit(f"error: need {args.gguf} and {args.template}; run `make run` first")
    counts = [int(c) for c in args.counts.split(",")]
    record = run_record()
    rendered, stops = prompts(args.gguf, args.requests)
    count_tokens = token_counter(args.gguf)
    from stages.inference.gguf import GGUFFile

    rank = int(GGUFFile(args.template).tensors[0].shape[-1])
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="many-adapters.") as tmp:
        files = random_adapters(args.template, Path(tmp), max(counts))
        domains = list(files)
        adapter_mb = round(files[domains[0]].stat().st_size / 1e6, 1)
        for count in (0, *counts):
            chosen = {d: files[d] for d in domains[:count]}
            spec = "{" + ",".join(f"{d}:'{p}'" for d, p in chosen.items()) + "}"
            server = ours(f"{count} adapters", args.threads, args.clients, f"serve.model={args.gguf.resolve()}",
                          f"serve.adapters={spec}",
                          *(() if args.resident is None else (f"serve.resident_adapters={args.resident}",)))
            started = time.perf_counter()
            start(server, Path(tmp), timeout_s=600)
            row = {"startup_s": round(time.perf_counter() - started, 2),
                   "files_mb": round(sum(p.stat().st_size for p in chosen.values()) / 1e6, 1)}
            try:
                listed = server.loaded["models"]
                require(sorted(listed[1:]) == sorted(f"domain-llm-{d}" for d in chosen),
                        f"the {count}-adapter server lists {len(listed) - 1} adapters")
                base_id = listed[0]
                one = [(domains[0] if count else None, p) for p in rendered]
                loads = {"one": one}
                if count >= SPREAD:
                    loads["spread"] = [(domains[i % SPREAD], p) for i, p in enumerate(rendered)]
                asyncio.run(load(server.url, bodies(one[:args.clients], "ours", domains, base_id, 8, stops),
                                 args.clients, count_tokens))  # warm-up
                for name, plan in loads.items():
                    before = httpx.get(server.url + "/api/v1/model/info", timeout=10).json()["batching"]
                    row[name] = asyncio.run(load(server.url, bodies(plan, "ours", domains, base_id, args.max_tokens,
                                                                    stops), args.clients, count_tokens))
                    info = httpx.get(server.url + "/api/v1/model/info", timeout=10).json()
                    row[name]["adapter_switches"] = info["batching"]["adapter_switches"] - before["adapter_switches"]
                    require(row[name]["failures"] == 0, f"{server.name}, {name}: {row[name]['failure_reasons']}")
                    print(f"{server.name} {name}: {row[name]}", flush=True)
                row["lanes"] = info["lanes"]
                row["rss_mb"] = rss_mb(server)
            finally:
                stop(server)
            if "spread" in row:
                row["spread_over_one"] = round(row["spread"]["tokens_per_s"] / row["one"]["tokens_per_s"], 3)
            if count:
                budget = results["0"]["rss_mb"] + row["files_mb"]
                row["rss_over_budget"] = round(row["rss_mb"] / budget, 3)
            results[str(count)] = row
            print(f"{server.name}: {row}", flush=True)
    result = {"name": "many_adapters", **finish_record(record), "argv": sys.argv, "gguf": str(args.gguf),
              "template": str(args.template.relative_to(ROOT) if args.template.is_relative_to(ROOT) else args.template),
              "rank": rank, "adapter_mb": adapter_mb,
              "clients": args.clients, "max_tokens": args.max_tokens, "requests": args.requests,
              "threads": args.threads, "resident_adapters": args.resident, "servers": results}
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"), markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
