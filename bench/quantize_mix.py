"""Which llama.cpp tensor mix keeps a quantized GGUF within the quality goal: a sweep of quantization recipes
(a file type, per-tensor type overrides, optionally an importance matrix), each measured against the f16
reference side by side in one run on two held-out splits. The recipe is chosen on the validation split and
reported on the test split; --holdout adds a third set nobody tuned on (e.g. another domain's test split).

    python bench/quantize_mix.py --model models/merged --data-dir data/processed/healthcare
    domain-llm prepare domain=legal paths.processed=/tmp/other && python bench/quantize_mix.py \
        --model models/merged --data-dir data/processed/healthcare --holdout /tmp/other/legal/test.jsonl

Prints per recipe: MB, bits/weight, ΔPPL and KL vs f16 on each split; then the smallest recipe whose validation
ΔPPL is at most --goal minus --margin (about the validation-to-test spread seen here). Writes
bench/results/quantize_mix.json and bench/results/quantize_mix.md with the command.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.run_info import RESULTS_DIR, finish_record, run_record  # noqa: E402
from stages.fileio import read_jsonl, write_json, write_text  # noqa: E402
from stages.quantize.api import convert_to_gguf, quantize_gguf  # noqa: E402
from stages.quantize.benchmark import BenchmarkArgs, benchmark_files  # noqa: E402
from stages.quantize.imatrix import compute_imatrix  # noqa: E402

# name -> (llama.cpp file type, {tensor regex: GGML type}, use the importance matrix)
RECIPES: dict[str, tuple[str, dict[str, str], bool]] = {
    "stock": ("q4_k_m", {}, False),
    "stock+imatrix": ("q4_k_m", {}, True),
    "d6v8": ("q4_k_m", {"ffn_down": "q6_k", "attn_v": "q8_0"}, False),
    "d6v8o8": ("q4_k_m", {"ffn_down": "q6_k", "attn_v": "q8_0", "attn_output": "q8_0"}, False),
    "d6v8-edge8": ("q4_k_m", {r"blk\.(0|1|2|27|28|29)\.": "q8_0", "ffn_down": "q6_k", "attn_v": "q8_0"}, False),
    "d6v8g8": ("q4_k_m", {"ffn_down": "q6_k", "attn_v": "q8_0", "ffn_gate": "q8_0"}, False),
    "d6v8g8+imatrix": ("q4_k_m", {"ffn_down": "q6_k", "attn_v": "q8_0", "ffn_gate": "q8_0"}, True),
    "d6v8u8": ("q4_k_m", {"ffn_down": "q6_k", "attn_v": "q8_0", "ffn_up": "q8_0"}, False),
    "q5_k_m-stock": ("q5_k_m", {}, False),
    "q5_k_m-q5_0": ("q5_k_m", {r"attn_(q|k|output)|ffn_(gate|up)": "q5_0"}, False),
    "q8_0": ("q8_0", {}, False),
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", type=Path, required=True, help="HF folder (the merged fine-tuned model)")
    parser.add_argument("--data-dir", type=Path, required=True, help="folder with train/validation/test.jsonl")
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma list of {', '.join(RECIPES)}")
    parser.add_argument("--goal", type=float, default=3.0, help="ΔPPL goal in percent")
    parser.add_argument("--margin", type=float, default=0.25, help="validation must beat the goal by this much")
    parser.add_argument("--holdout", type=Path, help="extra JSONL scored for every recipe (not used to choose)")
    parser.add_argument("--imatrix-examples", type=int, default=200)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "quantize_mix.json")
    return parser.parse_args()


def table(rows: dict[str, dict], splits: list[str]) -> str:
    header = "| recipe | type | overrides | imatrix | MB | bits/weight | " + \
        " | ".join(f"{s} ΔPPL % | {s} KL" for s in splits) + " |"
    lines = [header, "|" + " --- |" * (6 + 2 * len(splits))]
    for name, r in rows.items():
        overrides = ", ".join(f"`{k}`→{v}" for k, v in r["overrides"].items()).replace("|", "\\|") or "–"
        cells = [f"{r[s]['delta_ppl_pct']:+.2f} | {r[s]['kl_divergence']:.4f}" for s in splits]
        lines.append(f"| {name} | {r['type']} | {overrides} | {'yes' if r['imatrix'] else 'no'} | {r['size_mb']:.1f} "
                     f"| {r['bits_per_weight']:.2f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    args = parse_args()
    logging.basicConfig(level=logging.WARNING)
    record = run_record()
    names = [n.strip() for n in args.recipes.split(",") if n.strip()]
    unknown = [n for n in names if n not in RECIPES]
    if unknown:
        sys.exit(f"error: --recipes: unknown {unknown}; choose from {', '.join(RECIPES)}")
    splits = {s: read_jsonl(args.data_dir / f"{s}.jsonl") for s in ("validation", "test")}
    if args.holdout:
        splits["holdout"] = read_jsonl(args.holdout)
    bench_args = BenchmarkArgs(max_examples=60, n_ctx=512, decode_tokens=8, threads=args.threads)
    imatrix = None
    if any(RECIPES[n][2] for n in names):
        imatrix = compute_imatrix(args.model, read_jsonl(args.data_dir / "train.jsonl"), args.imatrix_examples)
    rows: dict[str, dict] = {}
    with tempfile.TemporaryDirectory(prefix="quantize-mix.") as scratch:
        reference = convert_to_gguf(args.model, Path(scratch) / "model-f16.gguf", threads=args.threads)
        files = {}
        for name in names:
            type_name, overrides, use_imatrix = RECIPES[name]
            files[name] = Path(scratch) / f"{name}.gguf"
            report = quantize_gguf(reference, files[name], type_name, threads=args.threads, tensor_types=overrides,
                                   imatrix=imatrix if use_imatrix else None)
            rows[name] = {"type": type_name, "overrides": overrides, "imatrix": use_imatrix,
                          "bits_per_weight": round(report.bits_per_weight, 3)}
        for split, records in splits.items():
            metrics = benchmark_files(reference, files, records, bench_args)
            for name in names:
                rows[name]["size_mb"] = metrics[name]["size_mb"]
                rows[name][split] = {k: metrics[name][k] for k in ("delta_ppl_pct", "kl_divergence",
                                                                   "top1_agreement", "tokens_scored")}
    print(table(rows, list(splits)))
    within = [n for n in names if rows[n]["validation"]["delta_ppl_pct"] <= args.goal - args.margin]
    chosen = min(within, key=lambda n: rows[n]["size_mb"]) if within else None
    verdict = (f"chosen on validation (ΔPPL <= {args.goal - args.margin:.2f}%): {chosen}, "
               f"{rows[chosen]['size_mb']:.1f} MB, " +
               ", ".join(f"{s} ΔPPL {rows[chosen][s]['delta_ppl_pct']:+.2f}%" for s in splits if s != "validation") +
               f" (goal <= +{args.goal:.1f}%)" if chosen else "no recipe meets the goal on validation")
    print(verdict)
    result = finish_record({**record, "recipes": rows, "chosen": chosen, "verdict": verdict})
    write_json(args.output, result)
    write_text(args.output.with_suffix(".md"),
               f"# Quantization recipes vs f16\n\n`{result['command']}`\n\n{table(rows, list(splits))}\n\n"
               f"{verdict}\n")
    print(f"wrote {args.output} and {args.output.with_suffix('.md')}")


if __name__ == "__main__":
    main()
