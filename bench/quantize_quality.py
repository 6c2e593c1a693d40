"""Quantization size / quality / speed on a real model: f16 reference vs each llama.cpp type, side by side in
one run (same test answers, same threads). Prints size ratio, ΔPPL, KL, top-1 agreement and decode speed-up
vs f16 (goal: q4_k_m ΔPPL <= +3%) and writes bench/results/quantize_quality.json with the command.

    python bench/quantize_quality.py --model /tmp/smol_base --test-file data/processed/healthcare/test.jsonl
    python bench/quantize_quality.py --gguf-dir models/gguf --test-file data/processed/healthcare/test.jsonl

With --gguf-dir the already published files (model-f16.gguf + model-<type>.gguf) are measured; otherwise the
model folder is converted and quantized first (stages/quantize code path).
"""

from __future__ import annotations

import argparse
import logging
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stages.fileio import read_jsonl, write_json  # noqa: E402
from stages.quantize.api import convert_and_quantize  # noqa: E402
from stages.quantize.benchmark import BenchmarkArgs, benchmark_files  # noqa: E402


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", type=Path, help="HF folder to convert and quantize")
    source.add_argument("--gguf-dir", type=Path, help="folder with model-f16.gguf and model-<type>.gguf")
    parser.add_argument("--test-file", type=Path, required=True, help="JSONL records with `messages`")
    parser.add_argument("--types", default="q4_k_m,q5_k_m,q8_0")
    parser.add_argument("--max-examples", type=int, default=60)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=ROOT / "bench" / "results" / "quantize_quality.json")
    return parser.parse_args()


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    types = [t.strip() for t in args.types.split(",") if t.strip()]
    records = read_jsonl(args.test_file)
    bench_args = BenchmarkArgs(max_examples=args.max_examples, n_ctx=512, decode_tokens=64, threads=args.threads)
    with tempfile.TemporaryDirectory(prefix="quantize-bench-files.") as scratch:
        if args.model:
            files, _ = convert_and_quantize(args.model, Path(scratch), types=types, threads=args.threads)
        else:
            files = {"f16": args.gguf_dir / "model-f16.gguf", **{t: args.gguf_dir / f"model-{t}.gguf" for t in types}}
        metrics = benchmark_files(files["f16"], {t: files[t] for t in types}, records, bench_args)
    ref = metrics["f16"]
    print(f"{'type':8} {'MB':>8} {'x smaller':>9} {'PPL':>8} {'ΔPPL %':>7} {'KL':>8} {'top1':>6} {'decode x':>8}")
    for name, row in metrics.items():
        speedup = row["decode_tokens_per_s"] / ref["decode_tokens_per_s"] if ref["decode_tokens_per_s"] else 0
        print(f"{name:8} {row['size_mb']:8.1f} {row['compression_ratio']:9.2f} {row.get('perplexity', 0):8.3f} "
              f"{row.get('delta_ppl_pct', 0):7.2f} {row.get('kl_divergence', 0):8.4f} "
              f"{row.get('top1_agreement', 0):6.3f} {speedup:8.2f}")
    q4 = metrics.get("q4_k_m", {}).get("delta_ppl_pct")
    if q4 is not None:
        print(f"q4_k_m ΔPPL vs f16: {q4:+.2f}% (goal <= +3%): {'met' if q4 <= 3 else 'NOT met'}")
    write_json(args.output, {"command": "python " + " ".join(sys.argv), "machine": platform.processor() or
                             platform.machine(), "threads": args.threads, "test_file": str(args.test_file),
                             "metrics": metrics})
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
