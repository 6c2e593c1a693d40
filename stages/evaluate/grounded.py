"""`domain-llm grounded` (the `grounded@<domain>` stages): the served GGUF answering questions about facts it never
saw in training (the test_facts split), alone and with retrieved passages, through the same prompt as
/api/v1/ask -> metrics/<domain>/grounded.json and metrics/<domain>/grounded/predictions.jsonl.

    domain-llm grounded --params params.yaml --domain legal     # as dvc.yaml runs grounded@legal
    domain-llm grounded eval.grounded.top_k=2 eval.grounded.rerank=true

Per condition ("closed_book": the question alone; "retrieval": the top_k passages from the index, numbered,
with the instruction to answer from them and cite): ROUGE-L, exact match, token F1 (with bootstrap CIs),
numeric accuracy (references that contain numbers: the answer has every one of them), and for retrieval
answer_in_context (the reference answer is in a passage given) and answer_in_cited_chunk (it is in a passage
the answer cites). Without a test_facts split (your own data) the test split is used, and the metrics say so.
Retrieval settings are chosen on the validation_facts split (`eval.grounded.split=validation_facts`,
bench/grounded_sweep.py), never on test_facts.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError
from stages.evaluate import metrics as m
from stages.evaluate.scoring import aggregate, json_safe, score_samples
from stages.fileio import read_jsonl, write_json, write_jsonl
from stages.inference import SamplingParams, load_engine
from stages.inference.adapters import ADAPTER_FILE
from stages.inference.grounding import Passage, check_citations, grounded_messages, strip_citations
from stages.inference.retrieval import Retriever

log = logging.getLogger(__name__)
REPORTED = ("rougeL", "exact_match", "f1")  # with bootstrap CIs; the others are plain shares


def numbers_reproduced(prediction: str, reference: str) -> float | None:
    """1.0 when every number in the reference is in the prediction; None when the reference has none."""
    wanted = m.extract_numbers(reference)
    if not wanted:
        return None
    found = m.extract_numbers(prediction)
    return float(all(any(abs(x - w) <= 1e-9 for x in found) for w in wanted))


def question_split(data_dir: Path, split: str = "test_facts") -> tuple[str, list[dict]]:
    """The named split's questions; test_facts falls back to the paraphrase test split (data without held-out
    facts)."""
    for name in (split, "test") if split == "test_facts" else (split,):
        path = data_dir / f"{name}.jsonl"
        if path.is_file() and (records := read_jsonl(path)):
            return name, records
    if split != "test_facts":
        raise StageError(f"eval.grounded.split={split}: {data_dir}/{split}.jsonl is missing or empty; use a split "
                         "prepare wrote (validation_facts needs data.validation_held_out_facts > 0)")
    raise StageError(f"{data_dir}: no test_facts.jsonl or test.jsonl with questions; run the prepare stage first")


def condition_metrics(answers: list[str], records: list[dict], seed: int, n_resamples: int,
                      case_sensitive: bool) -> tuple[dict, list[dict]]:
    references = [r["output"] for r in records]
    samples = score_samples(answers, references, [None] * len(answers), [None] * len(answers),
                            [None] * len(answers), [r["domain"] for r in records], None, case_sensitive)
    summary = aggregate(samples, n_resamples, 0.95, seed)
    out = {k: v for k, v in summary.items() if k.split("_ci_")[0] in REPORTED or k == "n_examples"}
    numeric = [n for a, ref in zip(answers, references, strict=True)
               if (n := numbers_reproduced(a, ref)) is not None]
    out["numeric_accuracy"] = round(sum(numeric) / len(numeric), 4) if numeric else None
    out["n_numeric"] = len(numeric)
    return out, [s.scores for s in samples]


def main(cfg: DictConfig) -> dict:
    settings = cfg.eval.grounded
    top_k, seed = int(settings.top_k), int(cfg.seed)
    if not 1 <= top_k <= 16:
        raise StageError(f"eval.grounded.top_k={top_k}: use 1..16 passages")
    started = time.perf_counter()
    split, records = question_split(Path(str(cfg.paths.processed)) / str(cfg.domain.name),
                                    str(settings.get("split") or "test_facts"))
    retriever = Retriever.load(Path(str(cfg.paths.index)))
    reranker, reranker_note = None, None
    if bool(settings.rerank):  # the one the server uses (the bi-encoder when the trained one measured below it)
        from stages.inference.reranker import served_reranker

        reranker, reranker_note = served_reranker(str(cfg.paths.reranker), bool(cfg.serve.rerank_below_biencoder))
    # What the server runs for this domain: the base GGUF with the domain's adapter (adapter@<domain>), when
    # published; a model file of its own (a merged GGUF) otherwise.
    adapter = Path(str(cfg.paths.adapter_gguf)) / ADAPTER_FILE
    domain = str(cfg.domain.name)
    engine = load_engine("gguf", str(settings.model), threads=int(cfg.threads), n_ctx=int(cfg.eval.n_ctx),
                         parallel=int(cfg.eval.batch_size), adapters={domain: adapter} if adapter.is_file() else None)
    served = engine.for_adapter(domain) if adapter.is_file() else engine
    system = cfg.domain.get("system_prompt")
    params = SamplingParams(max_new_tokens=int(cfg.eval.max_new_tokens), temperature=0.0, seed=seed,
                            repeat_penalty=float(cfg.eval.repeat_penalty))

    plain = [([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": r["instruction"]}]
             for r in records]
    hits = [retriever.search(r["instruction"], top_k, "hybrid", reranker=reranker,
                             candidates=int(settings.candidates)) for r in records]
    grounded = [grounded_messages(messages, [Passage(h.chunk.title, h.chunk.text) for h in found])
                for messages, found in zip(plain, hits, strict=True)]
    generated = served.chat(plain + grounded, params)
    closed_book = [g.text.strip() for g in generated[:len(records)]]
    with_retrieval = []
    per_sample_extra = []
    for record, g, found in zip(records, generated[len(records):], hits, strict=True):
        answer, cited, invalid = check_citations(g.text.strip(), len(found))
        reference = record["output"].strip()
        in_context = [n for n, h in enumerate(found, start=1) if reference in h.chunk.text]
        per_sample_extra.append({"cited": cited, "invalid_citations": invalid, "answer_in_passages": in_context,
                                 "answer_in_cited_chunk": bool(set(cited) & set(in_context)),
                                 "passages": [h.chunk.chunk_id for h in found]})
        with_retrieval.append(strip_citations(answer))

    n_resamples, case_sensitive = int(cfg.eval.bootstrap_samples), bool(cfg.eval.case_sensitive)
    closed, closed_scores = condition_metrics(closed_book, records, seed, n_resamples, case_sensitive)
    retrieved, retrieved_scores = condition_metrics(with_retrieval, records, seed, n_resamples, case_sensitive)
    n = len(records)
    retrieved["answer_in_context"] = round(sum(bool(x["answer_in_passages"]) for x in per_sample_extra) / n, 4)
    retrieved["answer_in_cited_chunk"] = round(sum(x["answer_in_cited_chunk"] for x in per_sample_extra) / n, 4)
    retrieved["cites_a_passage"] = round(sum(bool(x["cited"]) for x in per_sample_extra) / n, 4)
    retrieved["invalid_citations"] = sum(len(x["invalid_citations"]) for x in per_sample_extra)
    metrics = {"split": split, "questions": n, "model": Path(str(settings.model)).name,
               "adapter": str(adapter) if adapter.is_file() else None, "top_k": top_k,
               "reranked": reranker is not None,
               "reranker": reranker.info().get("type") if reranker is not None else None,
               **({"reranker_note": reranker_note} if reranker_note else {}),
               "closed_book": closed, "retrieval": retrieved,
               "rougeL_gain": round(retrieved["rougeL"] / closed["rougeL"], 2) if closed["rougeL"] else None,
               "seconds": round(time.perf_counter() - started, 1)}
    out_dir = Path(str(cfg.paths.metrics))
    write_jsonl(out_dir / "grounded" / "predictions.jsonl", [
        {"id": r["id"], "question": r["instruction"], "reference": r["output"], "closed_book": cb,
         "closed_book_scores": cs, "retrieval": wr, "retrieval_scores": rs, **extra}
        for r, cb, cs, wr, rs, extra in zip(records, closed_book, closed_scores, with_retrieval, retrieved_scores,
                                            per_sample_extra, strict=True)])
    metrics = json_safe(metrics)
    write_json(out_dir / "grounded.json", metrics)
    log.info("grounded answers on %s (%d questions): ROUGE-L closed book %.3f, with retrieval %.3f (x%s); "
             "answer in cited passage %.2f", split, n, closed["rougeL"], retrieved["rougeL"], metrics["rougeL_gain"],
             retrieved["answer_in_cited_chunk"])
    return metrics
