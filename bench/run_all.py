"""`make bench`: run every benchmark side by side on this machine, write bench/results/<name>.json (each with the
exact command, versions, machine, load average before/after) and bench/results/summary.md, print the ratios.

    python bench/run_all.py                                   # the pipeline's outputs (after `make run`), ~18 min
    python bench/run_all.py --threads 1                       # on a busy shared box (see bench/README.md)
    python bench/run_all.py --quick                           # smoke run: 1 repetition, tiny sizes, results in /tmp
    python bench/run_all.py --gguf "$(python -c 'from stages.base.materialize import smollm2_gguf_path as p; print(p())')" \
        --hf-model /tmp/smol_base --only api_throughput,gguf_vs_transformers

Inputs default to the pipeline's outputs: models/gguf/model-q4_k_m.gguf, models/merged/healthcare, models/reranker,
data/processed/healthcare/train.jsonl (prepared into a temp dir when absent). Each benchmark runs in its own
process, one after another, so none competes with another for the CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import RESULTS_DIR, load_average, machine_info, package_versions  # noqa: E402
from bench.summary import summary_markdown, summary_rows  # noqa: E402
from stages.fileio import write_json, write_text  # noqa: E402

BENCHMARKS = ("api_throughput", "gguf_vs_transformers", "eval_generation", "train_throughput", "rerank_latency",
              "cost_growth")


@dataclass
class Inputs:
    gguf: Path
    hf_model: Path
    reranker: Path
    train_data: Path
    threads: int
    train_threads: int
    cost_repeats: int
    quick: bool


def benchmark_args(name: str, i: Inputs) -> list[str]:
    """The command line of each benchmark: small but meaningful settings (quick: the smallest that runs)."""
    t = str(i.threads)
    if name == "api_throughput":
        # The grid (1/4/8/16 clients x 48/256 tokens, 3 servers) takes ~15 min per repetition here.
        return ["--gguf", str(i.gguf), "--threads", t, *(["--quick", "--concurrency", "1,8", "--max-tokens", "16"]
                                                          if i.quick else ["--repeats", "1"])]
    if name == "gguf_vs_transformers":
        return ["--gguf", str(i.gguf), "--hf-model", str(i.hf_model), "--threads", t,
                *(["--quick"] if i.quick else ["--repeats", "3", "--n-prompts", "4", "--max-new-tokens", "48"])]
    if name == "eval_generation":
        # 16 prompts in one batch (the evaluate stage generates a domain's test split in one batch of
        # eval.batch_size); 48 tokens keeps 3 repetitions of the one-at-a-time loop to a few minutes.
        size = ["4", "4", "16", "1"] if i.quick else ["16", "16", "48", "3"]
        return ["--model", str(i.hf_model), "--threads", t, "--n-prompts", size[0], "--batch-size", size[1],
                "--max-new-tokens", size[2], "--repeats", size[3]]
    if name == "train_throughput":
        rows, batch = ("8", "4") if i.quick else ("32", "8")
        return ["--model", str(i.hf_model), "--data", str(i.train_data), "--rows", rows, "--batch-size", batch,
                "--max-seq-length", "256", "--threads", str(i.train_threads)]
    if name == "rerank_latency":
        return ["--model", str(i.reranker), "--threads", t,
                *(["--documents", "20", "--repeats", "1"] if i.quick else ["--repeats", "5"])]
    if name == "cost_growth":
        return ["--quick"] if i.quick else ["--sizes", "100,400,1600", "--repeats", str(i.cost_repeats)]
    raise ValueError(name)


def run_benchmark(name: str, args: list[str], output: Path) -> dict | None:
    """Run one benchmark in its own process (its output streams through), then stamp its result file."""
    cmd = [sys.executable, str(ROOT / "bench" / f"{name}.py"), *args, "--output", str(output)]
    if name == "cost_growth":
        cmd += ["--plot", str(output.with_suffix(".png"))]
    shown = " ".join(["python", f"bench/{name}.py", *args, "--output", str(output)])
    print(f"\n=== {name}: {shown}", flush=True)
    before, started = load_average(), time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env={**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"})
    wall = time.perf_counter() - started
    if proc.returncode != 0 or not output.is_file():
        print(f"!!! {name} failed (exit {proc.returncode})", flush=True)
        return None
    result = json.loads(output.read_text())
    # Older benchmarks record less about the run; the same stamp on every file makes them comparable.
    result["run_all"] = {"command": shown, "wall_s": round(wall, 1), "load_average_before": before,
                         "load_average_after": load_average(), "versions": package_versions(),
                         "machine": machine_info()}
    write_json(output, result)
    return result


def prepared_train_data(path: Path, scratch: Path) -> Path:
    """The pipeline's prepared train split, or one prepared now (synthetic healthcare) in a temp dir."""
    if path.is_file():
        return path
    out = scratch / "processed"
    cmd = [str(Path(sys.executable).parent / "domain-llm"), "prepare", f"paths.processed={out}",
           f"paths.metrics={scratch / 'metrics'}", "data.num_samples=200"]
    print(f"{path} not found: preparing synthetic data with {' '.join(cmd[1:])}", flush=True)
    subprocess.run(cmd, cwd=scratch, check=True, capture_output=True)
    return out / "healthcare" / "train.jsonl"


def shown_path(path: Path) -> str:
    path = path.resolve()
    return path.relative_to(ROOT).as_posix() if path.is_relative_to(ROOT) else str(path)


def print_ratios(results: dict[str, dict]) -> None:
    print("\n=== ratios (ours / peer; latency and size ratios below 1 are better)")
    for row in summary_rows(results):
        ratio = "" if row.ratio is None else f"{row.ratio:.2f}x"
        print(f"{row.benchmark:24s} {row.measure[:78]:78s} {row.ours:>9s} vs {row.peer:>9s}  {ratio}")
    if "cost_growth" in results:
        r = results["cost_growth"]
        print("cost growth log-log slopes: " + ", ".join(f"{s} {v:.2f}" for s, v in r["loglog_slope"].items())
              + (f" -> worse than linear: {', '.join(r['worse_than_linear'])}" if r["worse_than_linear"]
                 else " -> nothing grows worse than linearly"))


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gguf", type=Path, default=ROOT / "models" / "gguf" / "model-q4_k_m.gguf")
    parser.add_argument("--hf-model", type=Path, default=ROOT / "models" / "merged" / "healthcare")
    parser.add_argument("--reranker", type=Path, default=ROOT / "models" / "reranker",
                        help="trained cross-encoder; absent -> the bundled MiniLM with a fresh head (same cost)")
    parser.add_argument("--train-data", type=Path, default=ROOT / "data" / "processed" / "healthcare" / "train.jsonl")
    parser.add_argument("--threads", type=int, default=2, help="threads for every inference benchmark (conf: threads)")
    parser.add_argument("--train-threads", type=int, default=1, help="torch threads for training (conf: train.threads)")
    parser.add_argument("--cost-repeats", type=int, default=3, help="repetitions of each cost-growth point")
    parser.add_argument("--only", default=",".join(BENCHMARKS), help="comma-separated subset of: " + ", ".join(BENCHMARKS))
    parser.add_argument("--quick", action="store_true", help="1 repetition, tiny sizes: checks that everything runs")
    parser.add_argument("--results-dir", type=Path, default=None,
                        help="default bench/results (with --quick: a temp dir, so smoke runs never replace results)")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    selected = [b.strip() for b in args.only.split(",") if b.strip()]
    unknown = sorted(set(selected) - set(BENCHMARKS))
    if unknown:
        sys.exit(f"error: --only {unknown[0]}: unknown benchmark; use any of {', '.join(BENCHMARKS)}")
    for path, flag in ((args.gguf, "--gguf FILE"), (args.hf_model, "--hf-model DIR")):
        if not path.exists():
            sys.exit(f"error: {path}: not found; run `make run` first to build the pipeline's outputs, or pass {flag}")
    results_dir = args.results_dir or (Path(tempfile.gettempdir()) / "domain-llm-bench-quick" if args.quick
                                       else RESULTS_DIR)
    results_dir.mkdir(parents=True, exist_ok=True)
    command = " ".join(["python", "bench/run_all.py", *sys.argv[1:]])
    header = {"command": command, "versions": package_versions(), "machine": machine_info(), "threads": args.threads,
              "inputs": {"gguf": shown_path(args.gguf), "hf_model": shown_path(args.hf_model),
                         "reranker": shown_path(args.reranker)}}
    header["machine"]["load_average_before"] = load_average()
    started = time.perf_counter()
    results: dict[str, dict] = {}
    failed: list[str] = []
    with tempfile.TemporaryDirectory(prefix="bench-data.") as scratch:
        inputs = Inputs(gguf=args.gguf.resolve(), hf_model=args.hf_model.resolve(), reranker=args.reranker,
                        train_data=args.train_data, threads=args.threads, train_threads=args.train_threads,
                        cost_repeats=args.cost_repeats, quick=args.quick)
        for name in (b for b in BENCHMARKS if b in selected):
            if name == "train_throughput":
                inputs.train_data = prepared_train_data(args.train_data, Path(scratch))
            result = run_benchmark(name, benchmark_args(name, inputs), results_dir / f"{name}.json")
            if result is None:
                failed.append(name)
            else:
                results[name] = result
    header["machine"]["load_average_after"] = load_average()
    header["wall_s"] = time.perf_counter() - started
    header["finished"] = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    write_text(results_dir / "summary.md", summary_markdown(results, header))
    print_ratios(results)
    print(f"\nwrote {results_dir}/summary.md and {len(results)} result files "
          f"({header['wall_s'] / 60:.1f} min; load average {header['machine']['load_average_before']} -> "
          f"{header['machine']['load_average_after']})")
    if failed:
        sys.exit(f"error: benchmarks failed: {', '.join(failed)} (their output is above)")


if __name__ == "__main__":
    main()
