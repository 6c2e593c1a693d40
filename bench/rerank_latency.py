"""Rerank latency on CPU: 1 query x 100 documents, batched cross-encoder vs one pair per forward pass, and the
bi-encoder fallback, side by side in one run. Prints latency and pairs/s and the batched/unbatched speed-up;
writes bench/results/rerank_latency.json with the command.

    python bench/rerank_latency.py                                   # models/reranker if trained, else MiniLM
    python bench/rerank_latency.py --model models/reranker --threads 2 --batch-size 32 --repeats 5

The documents are healthcare answers from the synthetic generator (the shape the reranker is trained on).
Without a trained model the bundled MiniLM with a fresh 1-logit head is timed: the same network, so the
same cost. Each repetition runs every variant once after a warm-up; medians over repetitions are reported.
"""

from __future__ import annotations

import argparse
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402

from stages.fileio import write_json  # noqa: E402
from stages.inference.reranker import BiEncoderReranker, Reranker, has_cross_encoder  # noqa: E402
from stages.prepare.synthetic.generator import generate_synthetic  # noqa: E402
from stages.reranker.train import load_base_cross_encoder  # noqa: E402


def documents_and_query(n_documents: int) -> tuple[str, list[str]]:
    records = generate_synthetic(["healthcare"], num_samples=max(4 * n_documents, 400), seed=0)
    answers = list(dict.fromkeys(r["output"] for r in records))
    while len(answers) < n_documents:  # the fact table is finite; repeat answers to reach the count
        answers += answers[: n_documents - len(answers)]
    return records[0]["instruction"], answers[:n_documents]


def timed(fn, repeats: int) -> list[float]:
    fn()  # warm-up: first call pays tokenizer/graph set-up
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        seconds.append(time.perf_counter() - start)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/reranker")
    parser.add_argument("--documents", type=int, default=100)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--max-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "rerank_latency.json"))
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    query, documents = documents_and_query(args.documents)
    if has_cross_encoder(args.model):
        batched = Reranker.load(args.model, max_length=args.max_length, batch_size=args.batch_size)
        model_name = args.model
    else:
        model = load_base_cross_encoder("bundled", max_length=args.max_length, seed=0)
        batched = Reranker(model, batch_size=args.batch_size)
        model_name = "bundled MiniLM-L6 cross-encoder (untrained head; same cost)"
    one_at_a_time = Reranker(batched.model, batch_size=1)
    bi_encoder = BiEncoderReranker(max_length=args.max_length, batch_size=args.batch_size)

    variants = {
        f"cross_encoder_batch_{batched.batch_size}": lambda: batched.rerank(query, documents),
        "cross_encoder_batch_1": lambda: one_at_a_time.rerank(query, documents),
        "bi_encoder_fallback": lambda: bi_encoder.rerank(query, documents),
    }
    results = {}
    for name, fn in variants.items():
        median = statistics.median(timed(fn, args.repeats))
        results[name] = {"latency_ms": round(median * 1000, 1), "pairs_per_s": round(len(documents) / median, 1)}
        print(f"{name:28s} {median * 1000:8.1f} ms per query x {len(documents)} docs   "
              f"{len(documents) / median:8.1f} pairs/s")
    batched_key = f"cross_encoder_batch_{batched.batch_size}"
    speedup = results["cross_encoder_batch_1"]["latency_ms"] / results[batched_key]["latency_ms"]
    print(f"batched vs one pair at a time: {speedup:.2f}x")

    write_json(args.output, {
        "command": "python " + " ".join([Path(sys.argv[0]).as_posix(), *sys.argv[1:]]),
        "model": model_name, "documents": len(documents), "threads": args.threads, "max_length": args.max_length,
        "repeats": args.repeats, "results": results, "batched_speedup_vs_batch_1": round(speedup, 2),
        "machine": {"cpu": platform.processor() or platform.machine(), "torch": torch.__version__},
    })
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
