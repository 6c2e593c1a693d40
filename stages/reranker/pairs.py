"""Training pairs for the reranker: each question with its own answer and hard negatives from its domain.

    from stages.reranker.pairs import load_split, records_to_queries, build_training_pairs
    train = records_to_queries(load_split("data/processed/healthcare", "train"))
    pairs = build_training_pairs(train, hard_negatives=4, miner="bm25", seed=42)

A hard negative is the answer of ANOTHER question of the same domain that BM25 (or the bundled MiniLM
bi-encoder) ranks close to the question. A topic negative is another fact about the question's own subject
(the same condition / concept / term: `fact_id` "<domain>.<subject>.<field>"), the answer a retriever most
easily confuses with the right one. With an index, chunk pairs teach the same on passages: the question with
a retrieved passage holding its answer, and passages retrieved beside it that do not. Two questions that share an answer (the same `output` text, or
the same `fact_id` when the source provides one) are paraphrases of one fact, so neither's answer is a
negative for the other: training on them would teach the model to reject correct answers.

Split hygiene: training pairs (questions *and* negative answers) come only from the train split;
`drop_held_out_questions` removes any training question whose text also occurs in a held-out split. The index
holds every fact, so chunk pairs skip passages that state a test_facts/validation_facts answer
(stages/prepare/held_out.py), and `check_pairs` refuses any pair whose query or document still states one.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from stages.errors import StageError
from stages.fileio import read_jsonl
from stages.prepare.held_out import HeldOutAnswers, HeldOutFact, skip_held_out
from stages.prepare.records import user_content

log = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")
MINERS = ("bm25", "embedding")
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Query:
    """One question with its reference answer, as the reranker sees it."""

    id: str
    text: str  # instruction + input, the user turn
    domain: str
    answer: str
    fact_id: str | None = None


@dataclass(frozen=True)
class Answer:
    """One unique answer text of a domain and the facts it answers."""

    text: str
    domain: str
    fact_ids: frozenset[str] = frozenset()


def normalize(text: str) -> str:
    """Case- and whitespace-insensitive key: answers differing only in spacing are the same answer."""
    return " ".join(text.split()).casefold()


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens for BM25."""
    return _WORD.findall(text.lower())


def load_split(data_dir: str | Path, split: str) -> list[dict]:
    """Read `<data_dir>/<split>.jsonl`; a record without a question or answer is a StageError naming it."""
    path = Path(data_dir) / f"{split}.jsonl"
    if not path.is_file():
        raise StageError(f"{path}: prepared split not found; run `domain-llm prepare` (or `dvc repro prepare`) first")
    records = read_jsonl(path)
    for number, record in enumerate(records, start=1):
        for field in ("instruction", "output"):
            value = record.get(field)
            if not isinstance(value, str) or not value.strip():
                raise StageError(f"{path}: record {number} (id={record.get('id', '?')}): field '{field}' "
                                 "is missing or empty; re-run the prepare stage")
    return records


def records_to_queries(records: Iterable[dict]) -> list[Query]:
    queries = []
    for record in records:
        fact_id = record.get("fact_id")
        queries.append(Query(id=str(record.get("id", "")),
                             text=user_content(record["instruction"], record.get("input") or ""),
                             domain=str(record.get("domain", "")), answer=record["output"],
                             fact_id=str(fact_id) if fact_id is not None else None))
    return queries


def drop_held_out_questions(train: Sequence[Query], held_out: Iterable[Query]) -> list[Query]:
    """Training questions minus any whose text also appears in a held-out split (a leak the prepare
    stage should already prevent; we do not rely on it)."""
    held_out_texts = {normalize(q.text) for q in held_out}
    kept = [q for q in train if normalize(q.text) not in held_out_texts]
    if len(kept) < len(train):
        log.warning("dropped %d training questions that also occur in a held-out split", len(train) - len(kept))
    return kept


def build_answer_pools(queries: Iterable[Query]) -> dict[str, list[Answer]]:
    """Unique answers per domain (first-seen order), each with every fact id it answers."""
    texts: dict[str, dict[str, str]] = {}
    facts: dict[str, dict[str, set[str]]] = {}
    for q in queries:
        key = normalize(q.answer)
        texts.setdefault(q.domain, {}).setdefault(key, q.answer)
        fact_set = facts.setdefault(q.domain, {}).setdefault(key, set())
        if q.fact_id is not None:
            fact_set.add(q.fact_id)
    return {domain: [Answer(text, domain, frozenset(facts[domain][key])) for key, text in by_key.items()]
            for domain, by_key in texts.items()}


def facts_of(query: Query, pool: Sequence[Answer]) -> frozenset[str]:
    """The query's fact id plus the fact ids its answer text carries in the pool, so a record without a
    fact_id still recognises paraphrased answers of the fact its answer belongs to."""
    facts = {query.fact_id} if query.fact_id is not None else set()
    key = normalize(query.answer)
    for answer in pool:
        if normalize(answer.text) == key:
            facts |= answer.fact_ids
    return frozenset(facts)


def answers_question(answer: Answer, query: Query, query_facts: frozenset[str] | None = None) -> bool:
    """True when `answer` is a correct answer to `query`: the same text, or an answer to the same fact
    (`query_facts` from `facts_of`; default: the query's own fact id)."""
    if normalize(answer.text) == normalize(query.answer):
        return True
    if query_facts is None:
        query_facts = frozenset({query.fact_id}) if query.fact_id is not None else frozenset()
    return bool(answer.fact_ids & query_facts)


def _similarity_scores(queries: Sequence[Query], pool: Sequence[Answer], miner: str) -> np.ndarray:
    """(n_queries, n_answers) similarity of each question to each pool answer."""
    if miner == "bm25":
        from rank_bm25 import BM25Okapi

        bm25 = BM25Okapi([tokenize(a.text) or [""] for a in pool])
        return np.stack([bm25.get_scores(tokenize(q.text)) for q in queries])
    if miner == "embedding":
        from stages.inference.reranker import bundled_bi_encoder

        encoder = bundled_bi_encoder()
        q_emb = encoder.encode([q.text for q in queries], normalize_embeddings=True, convert_to_numpy=True)
        a_emb = encoder.encode([a.text for a in pool], normalize_embeddings=True, convert_to_numpy=True)
        return q_emb @ a_emb.T
    raise StageError(f"reranker.negative_miner={miner!r}: unknown miner; use one of {', '.join(MINERS)}")


def mine_hard_negatives(queries: Sequence[Query], pools: dict[str, list[Answer]], k: int,
                        miner: str = "bm25") -> list[list[str]]:
    """For each query (same order), the `k` pool answers of its domain most similar to it that do not
    answer it."""
    negatives: list[list[str]] = [[] for _ in queries]
    by_domain: dict[str, list[int]] = {}
    for i, q in enumerate(queries):
        by_domain.setdefault(q.domain, []).append(i)
    for domain, indices in by_domain.items():
        pool = pools.get(domain, [])
        if not pool:
            continue
        scores = _similarity_scores([queries[i] for i in indices], pool, miner)
        for i, row in zip(indices, scores, strict=True):
            query_facts = facts_of(queries[i], pool)
            # stable sort: equal scores keep pool order, so mining is deterministic
            for j in np.argsort(-row, kind="stable"):
                if len(negatives[i]) == k:
                    break
                if not answers_question(pool[j], queries[i], query_facts):
                    negatives[i].append(pool[j].text)
    return negatives


def add_random_negatives(queries: Sequence[Query], pools: dict[str, list[Answer]], negatives: list[list[str]],
                         k: int, rng: random.Random) -> None:
    """Append `k` random non-answers of the query's domain (not already chosen) to each query's negatives."""
    for q, chosen in zip(queries, negatives, strict=True):
        pool = pools.get(q.domain, [])
        query_facts = facts_of(q, pool)
        taken = set(chosen)
        candidates = [a.text for a in pool if a.text not in taken and not answers_question(a, q, query_facts)]
        chosen.extend(rng.sample(candidates, min(k, len(candidates))))


def subject_of(fact_id: str | None) -> str | None:
    """"healthcare.asthma.symptoms" -> "healthcare.asthma" (None without a fact id)."""
    return fact_id.rpartition(".")[0] or None if fact_id else None


def add_topic_negatives(queries: Sequence[Query], pools: dict[str, list[Answer]], negatives: list[list[str]],
                        k: int, rng: random.Random) -> None:
    """Append up to `k` answers about the query's own subject that do not answer it (not already chosen)."""
    for q, chosen in zip(queries, negatives, strict=True):
        subject = subject_of(q.fact_id)
        if subject is None or k < 1:
            continue
        pool = pools.get(q.domain, [])
        query_facts = facts_of(q, pool)
        taken = set(chosen)
        same = [a.text for a in pool if a.text not in taken and not answers_question(a, q, query_facts)
                and any(subject_of(f) == subject for f in a.fact_ids)]
        chosen.extend(rng.sample(same, min(k, len(same))))


def chunk_training_pairs(train: Sequence[Query], retriever, negatives: int, candidates: int = 20,
                         held_out: HeldOutAnswers | None = None) -> list[dict]:
    """(question, passage, label) rows over the index: 1 for the best-retrieved passage holding the question's
    answer verbatim, 0 for the `negatives` best-retrieved passages that do not hold it; passages stating a
    `held_out` fact are skipped first. Questions whose answer is in none of their remaining `candidates`
    passages are skipped. Passages read "title\ntext", as the retriever hands them to the reranker."""
    rows = []
    for q in train:
        hits = skip_held_out(retriever.search(q.text, candidates, "hybrid"), held_out)
        holding = [h for h in hits if q.answer.strip() in h.chunk.text]
        if not holding:
            continue
        others = [h for h in hits if q.answer.strip() not in h.chunk.text][:negatives]
        rows.append({"query": q.text, "document": f"{holding[0].chunk.title}\n{holding[0].chunk.text}", "label": 1.0})
        rows.extend({"query": q.text, "document": f"{h.chunk.title}\n{h.chunk.text}", "label": 0.0} for h in others)
    return rows


def build_training_pairs(train: Sequence[Query], hard_negatives: int, miner: str = "bm25", seed: int = 0,
                         random_negatives: int = 0, topic_negatives: int = 0) -> list[dict]:
    """(query, document, label) rows: 1 for the question's own answer, 0 for each of its negatives:
    `hard_negatives` mined ones, `topic_negatives` other facts about its subject, then `random_negatives`
    drawn uniformly from the rest of its domain.

    Hard negatives mostly share the question's subject and teach which aspect is asked; random ones teach
    the subject match that a ranking over a whole domain mostly needs.
    Negatives come from the answers of `train` only, so nothing outside the train split enters training.
    Rows are shuffled with `seed` so a batch mixes questions.
    """
    counts = (hard_negatives, random_negatives, topic_negatives)
    if sum(counts) < 1 or min(counts) < 0:
        raise StageError(f"reranker.hard_negatives={hard_negatives}, random_negatives={random_negatives}, "
                         f"topic_negatives={topic_negatives}: need at least 1 negative per question and no "
                         "negative count")
    rng = random.Random(seed)
    pools = build_answer_pools(train)
    negatives = mine_hard_negatives(train, pools, hard_negatives, miner)
    add_topic_negatives(train, pools, negatives, topic_negatives, rng)
    add_random_negatives(train, pools, negatives, random_negatives, rng)
    rows = []
    for q, q_negatives in zip(train, negatives, strict=True):
        rows.append({"query": q.text, "document": q.answer, "label": 1.0})
        rows.extend({"query": q.text, "document": doc, "label": 0.0} for doc in q_negatives)
    rng.shuffle(rows)
    return rows


def held_out_answers(unseen_by_split: dict[str, Sequence[Query]], taught: Iterable[Query]) -> HeldOutAnswers:
    """The predicate of stages/prepare/held_out.py over queries: the answers of test_facts/validation_facts
    (their fact id, else record id), taught: the train and validation answers."""
    facts = [HeldOutFact(split, q.fact_id or q.id, q.answer) for split, queries in unseen_by_split.items()
             for q in queries]
    return HeldOutAnswers(facts, [q.answer for q in taught])


def check_pairs(rows: Sequence[dict], train: Sequence[Query], held_out: HeldOutAnswers) -> None:
    """StageError naming the first training pair whose query or document states a held-out fact. Passages
    were filtered already (the index holds every fact by design); a question or answer that states one means
    the prepared train split is wrong, and training on it would let the benchmark grade a trained answer."""
    ids = {q.text: q.id for q in train}
    verdicts: dict[str, HeldOutFact | None] = {}  # one answer text is in many rows: check each text once
    for number, row in enumerate(rows, start=1):
        for field in ("query", "document"):
            text = row[field]
            if text not in verdicts:
                verdicts[text] = held_out.stated_in(text)
            fact = verdicts[text]
            if fact is not None:
                role = field if field == "query" else ("positive" if row["label"] == 1.0 else "negative")
                question = ids.get(row["query"], "?")
                raise StageError(f"reranker training pair {number} (train question {question}): its {role} text "
                                 f"states {fact.split} fact {fact.fact}; held-out facts must not be trained on: "
                                 "re-run `domain-llm prepare` (its held_out_text check) and check the train split")
