"""The `train_reranker` stage: mine pairs, fine-tune the cross-encoder, compare it with baselines.

    domain-llm reranker                               # conf/ defaults (domain=healthcare, bundled MiniLM)
    domain-llm reranker reranker.epochs=2 domain=mixed
    dvc repro train_reranker                          # reads params.yaml

Reads  {paths.processed}/{domain.name}/{train,validation,test,test_facts,validation_facts}.jsonl
Writes {paths.reranker}/ (safetensors cross-encoder + README.md model card + reranker_info.json, atomically)
       {paths.metrics}/reranker.json (flat: bm25_/biencoder_/untrained_/trained_ x mrr_at_10, ndcg_at_10,
       recall_at_1, recall_at_5 on the benchmark split; paraphrase_<same> on the test split beside it)

The benchmark queries are the test_facts split when there is one: facts no training question asks, so no
answer among the candidates was a positive in training. On the paraphrase test split every answer was one
(another phrasing of the question trained it), and the trained model reaches MRR 1.00 there: that split
measures recall of trained pairs and is reported beside, not as the benchmark.
"""

from __future__ import annotations

import logging
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

from omegaconf import DictConfig

from stages.config import domain_names
from stages.errors import StageError
from stages.fileio import atomic_dir, write_json
from stages.inference.reranker import BiEncoderReranker, Reranker
from stages.prepare.held_out import HeldOutAnswers
from stages.prepare.splits import UNSEEN_FACT_SPLITS
from stages.reranker.card import render_model_card
from stages.reranker.evaluate import (
    build_candidate_sets,
    prefixed,
    ranking_metrics,
    score_bm25,
    score_pairs,
)
from stages.reranker.pairs import (
    MINERS,
    SPLITS,
    build_answer_pools,
    build_training_pairs,
    check_pairs,
    chunk_training_pairs,
    drop_held_out_questions,
    held_out_answers,
    load_split,
    records_to_queries,
)
from stages.reranker.train import RerankerTrainArgs, load_base_cross_encoder, train_cross_encoder

log = logging.getLogger(__name__)


@dataclass
class RerankerArgs:
    """cfg.reranker, typed (see conf/reranker/default.yaml for what each field means)."""

    base: str = "bundled"
    hard_negatives: int = 3
    random_negatives: int = 2
    topic_negatives: int = 2
    chunk_negatives: int = 3
    negative_miner: str = "bm25"
    epochs: float = 2.0
    batch_size: int = 16
    lr: float = 1e-4
    head_lr: float | None = 1e-3
    warmup_ratio: float = 0.1
    max_length: int = 256
    eval_candidates: int = 50
    eval_batch_size: int = 64
    eval_untrained: bool = False

    @classmethod
    def from_cfg(cls, section: DictConfig) -> RerankerArgs:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(section.keys()) - known)
        if unknown:
            raise StageError(f"reranker.{unknown[0]}: unknown setting; known: {', '.join(sorted(known))}")
        args = cls(**{k: section[k] for k in section.keys()})
        if args.negative_miner not in MINERS:
            raise StageError(f"reranker.negative_miner={args.negative_miner!r}: use one of {', '.join(MINERS)}")
        for name in ("batch_size", "max_length", "eval_batch_size"):
            if int(getattr(args, name)) < 1:
                raise StageError(f"reranker.{name}={getattr(args, name)}: must be >= 1")
        if args.eval_candidates < 0 or args.eval_candidates == 1:
            raise StageError(f"reranker.eval_candidates={args.eval_candidates}: use 0 (all) or >= 2")
        return args


def set_threads(threads: int) -> int:
    import torch

    n = threads if threads > 0 else (os.cpu_count() or 1)
    torch.set_num_threads(n)
    return n


def index_pairs(cfg: DictConfig, train_queries: list, negatives: int, seed: int,
                held_out: HeldOutAnswers | None = None) -> list[dict]:
    """Chunk-level pairs over paths.index (none without an index or with chunk_negatives 0), shuffled;
    passages stating a `held_out` fact are left out."""
    index = Path(str(cfg.paths.get("index") or ""))
    if negatives < 1 or not (index / "chunks.jsonl").is_file():
        return []
    import random

    from stages.inference.retrieval import Retriever

    rows = chunk_training_pairs(train_queries, Retriever.load(index), negatives, held_out=held_out)
    random.Random(f"{seed}:chunks").shuffle(rows)
    log.info("%d chunk-level pairs from %s", len(rows), index)
    return rows


def benchmark_summary(metrics: dict, benchmark_split: str, paraphrase: bool) -> dict:
    """{split: trained and bi-encoder MRR@10} written beside the model: serving reads it and serves the bi-encoder
    instead of a cross-encoder that ranked below it on any split (serving/components.py)."""
    splits = {benchmark_split: ""} | ({"test": "paraphrase_"} if paraphrase else {})
    return {split: {f"{method}_mrr_at_10": metrics[f"{prefix}{method}_mrr_at_10"] for method in ("trained", "biencoder")}
            for split, prefix in splits.items()}


def main(cfg: DictConfig) -> None:
    args = RerankerArgs.from_cfg(cfg.reranker)
    threads = set_threads(int(cfg.threads))
    seed = int(cfg.seed)
    # One reranker for every domain: each split is the union of the domains' own.
    data_dirs = [Path(cfg.paths.processed) / name for name in domain_names(cfg)]
    data_dir = data_dirs[0].parent
    out = Path(cfg.paths.reranker)

    def union(name: str) -> list:
        return [q for folder in data_dirs for q in records_to_queries(load_split(folder, name))]

    splits = {name: union(name) for name in SPLITS}
    # facts no training record states (synthetic data; absent in data prepared before those splits existed)
    unseen_by_split = {name: union(name) for name in UNSEEN_FACT_SPLITS
                       if all((folder / f"{name}.jsonl").is_file() for folder in data_dirs)}
    unseen = [q for queries in unseen_by_split.values() for q in queries]
    train_queries = drop_held_out_questions(splits["train"], splits["validation"] + splits["test"] + unseen)
    paraphrase_queries = splits["test"]
    benchmark_split = "test_facts" if unseen_by_split.get("test_facts") else "test"
    test_queries = unseen_by_split["test_facts"] if benchmark_split == "test_facts" else paraphrase_queries
    if not test_queries:
        raise StageError(f"{data_dir}/test.jsonl: no test questions to evaluate the reranker on")
    pairs = build_training_pairs(train_queries, args.hard_negatives, args.negative_miner, seed,
                                 random_negatives=args.random_negatives, topic_negatives=args.topic_negatives)
    # The index holds every fact: passages stating a held-out one are filtered out (routine), while a question
    # or answer stating one is refused (the prepared data is wrong; filtering would hide it).
    held_out = held_out_answers(unseen_by_split, splits["train"] + splits["validation"])
    chunk_pairs = index_pairs(cfg, train_queries, args.chunk_negatives, seed, held_out)
    pairs += chunk_pairs
    check_pairs(pairs, train_queries, held_out)

    # Candidate documents: unique answers of every split (documents, not questions, so no leak).
    eval_pools = build_answer_pools(splits["train"] + splits["validation"] + paraphrase_queries + unseen)
    candidate_sets = build_candidate_sets(test_queries, eval_pools, args.eval_candidates, seed)
    # the paraphrase split beside the benchmark (when the benchmark is test_facts)
    beside = (build_candidate_sets(paraphrase_queries, eval_pools, args.eval_candidates, seed)
              if benchmark_split == "test_facts" and paraphrase_queries else [])
    log.info("%d training pairs from %d train questions; %d test questions x up to %d candidates",
             len(pairs), len(train_queries), len(test_queries), max(len(c.documents) for c in candidate_sets))

    start = time.perf_counter()
    metrics: dict = {}

    def measure(method: str, score) -> None:
        """`method`'s ranking metrics on the benchmark sets and, prefixed paraphrase_, on the sets beside."""
        metrics.update(prefixed(method, ranking_metrics(candidate_sets, score(candidate_sets))))
        if beside:
            metrics.update(prefixed(f"paraphrase_{method}", ranking_metrics(beside, score(beside))))

    measure("bm25", lambda sets: score_bm25(sets, eval_pools))
    bi_encoder = BiEncoderReranker(max_length=args.max_length, batch_size=args.eval_batch_size)
    measure("biencoder", lambda sets: score_pairs(sets, bi_encoder.predict))

    model = load_base_cross_encoder(args.base, args.max_length, seed)
    reranker = Reranker(model, batch_size=args.eval_batch_size)
    if args.eval_untrained:
        measure("untrained", lambda sets: score_pairs(sets, reranker.predict))

    train_args = RerankerTrainArgs(epochs=args.epochs, batch_size=args.batch_size, lr=args.lr, head_lr=args.head_lr,
                                   warmup_ratio=args.warmup_ratio, seed=seed,
                                   pos_weight=float(args.hard_negatives + args.random_negatives + args.topic_negatives))
    stats = train_cross_encoder(model, pairs, train_args)
    measure("trained", lambda sets: score_pairs(sets, reranker.predict))
    metrics |= {"benchmark_split": benchmark_split, "test_questions": len(test_queries),
                "paraphrase_questions": len(beside),
                "candidates_per_question": round(sum(len(c.documents) for c in candidate_sets) / len(candidate_sets), 1),
                "chunk_pairs": len(chunk_pairs),
                **stats, "stage_seconds": round(time.perf_counter() - start, 1)}

    info = {**asdict(args), **stats, "domains": domain_names(cfg), "data_dir": str(data_dir), "output": str(out),
            "train_questions": len(train_queries), "test_questions": len(test_queries),
            "benchmark_split": benchmark_split,
            "chunk_pairs": len(chunk_pairs),
            "pos_weight": train_args.pos_weight, "seed": seed, "threads": threads,
            "score": "sigmoid(logit), 0..1", "benchmark": benchmark_summary(metrics, benchmark_split, bool(beside))}
    with atomic_dir(out) as tmp:
        model.save_pretrained(str(tmp), safe_serialization=True)
        (tmp / "README.md").write_text(render_model_card(info, metrics), encoding="utf-8")
        write_json(tmp / "reranker_info.json", info)
        for path in tmp.rglob("*"):  # safetensors writes its file 0600; a published model is world-readable
            path.chmod(0o755 if path.is_dir() else 0o644)
    write_json(Path(cfg.paths.metrics) / "reranker.json", metrics)
    log.info("reranker -> %s; MRR@10 trained %.3f vs BM25 %.3f, bi-encoder %.3f, untrained %s", out,
             metrics["trained_mrr_at_10"], metrics["bm25_mrr_at_10"], metrics["biencoder_mrr_at_10"],
             metrics.get("untrained_mrr_at_10", "not measured"))
