"""The index stage and retrieval: documents from a folder (or the synthetic fact sheets), overlapping chunks,
BM25 + MiniLM + fused search on a real index built by the stage entry point, one-line errors."""

from __future__ import annotations

import json

import pytest

from stages.errors import StageError
from stages.index.chunking import chunk_text
from stages.index.documents import fact_sheets, load_documents
from stages.inference.retrieval import RRF_K, Chunk, Hit, Retriever, fuse_reranked
from tests.stages.index.conftest import BAKING, VOLCANO


def test_chunks_pack_paragraphs_and_overlap():
    paragraphs = [" ".join(f"p{i}w{j}" for j in range(30)) for i in range(5)]
    chunks = chunk_text("\n\n".join(paragraphs), max_words=70, overlap_words=30)
    assert all(len(c.split()) <= 70 for c in chunks)
    # every paragraph is in some chunk whole, and consecutive chunks share a paragraph (the overlap)
    assert all(any(p in c for c in chunks) for p in paragraphs)
    assert all(set(a.split("\n\n")) & set(b.split("\n\n")) for a, b in zip(chunks, chunks[1:], strict=False))
    long = " ".join(f"w{j}" for j in range(250))
    windows = chunk_text(long, max_words=100, overlap_words=20)
    assert [len(w.split()) for w in windows] == [100, 100, 90] and windows[1].split()[0] == "w80"
    with pytest.raises(StageError, match="overlap_words < max_words"):
        chunk_text("x", max_words=10, overlap_words=10)


def test_documents_from_a_folder(tmp_path):
    (tmp_path / "README.md").write_text("# How to use this folder")  # never indexed
    (tmp_path / "volcano.md").write_text(VOLCANO)
    (tmp_path / "notes.jsonl").write_text(json.dumps({"id": "bread", "title": "Bread", "text": BAKING}) + "\n")
    docs = {d.doc_id: d for d in load_documents(tmp_path, "healthcare")}
    assert set(docs) == {"volcano.md", "bread"}
    assert docs["volcano.md"].title == "Volcanoes" and docs["bread"].source.endswith("notes.jsonl:1")


@pytest.mark.parametrize("name, content, message", [
    ("bad.jsonl", '{"text": "ok"}\n{"text": ', r"bad.jsonl:2: not valid JSON"),
    ("empty.jsonl", '{"title": "no text"}\n', r"empty.jsonl:1: field `text` missing or empty"),
    ("scan.pdf", "%PDF-1.4", r"scan.pdf: PDF is not read; convert it"),
    ("latin1.txt", b"caf\xe9", r"latin1.txt: not UTF-8 text"),
])
def test_unreadable_documents_are_one_line_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(StageError, match=message) as err:
        load_documents(tmp_path, "healthcare")
    assert "\n" not in str(err.value)


def test_empty_folder_indexes_the_fact_sheets(tmp_path):
    docs = load_documents(tmp_path / "absent", "legal")
    assert docs == fact_sheets("legal") and len(docs) > 10
    assert all(d.source == "synthetic:legal" and d.text for d in docs)
    (tmp_path / "file").write_text("x")
    with pytest.raises(StageError, match="not a folder"):
        load_documents(tmp_path / "file", "legal")


def test_stage_writes_the_index_and_its_metrics(built_index):
    metrics = json.loads((built_index / "metrics" / "index.json").read_text())
    assert metrics["documents"] == 6 and metrics["chunks"] >= 6 and metrics["build_seconds"] > 0
    chunks = [json.loads(line) for line in (built_index / "index" / "chunks.jsonl").read_text().splitlines()]
    assert {"volcano.md", "bread.txt", "other0"} <= {c["doc_id"] for c in chunks}


@pytest.mark.parametrize("mode", ["bm25", "embedding", "hybrid"])
def test_each_mode_finds_the_right_document(built_index, mode):
    retriever = Retriever.load(built_index / "index")
    [hit] = retriever.search("When did Mount Zorblax erupt?", top_k=1, mode=mode)
    assert hit.chunk.doc_id == "volcano.md" and "1887" in hit.chunk.text
    [hit] = retriever.search("Why does sourdough rise?", top_k=1, mode=mode)
    assert hit.chunk.doc_id == "bread.txt"


def test_retrieval_errors_are_one_line(built_index, tmp_path):
    retriever = Retriever.load(built_index / "index")
    with pytest.raises(StageError, match="query is empty"):
        retriever.search("   ")
    with pytest.raises(StageError, match="retrieval mode 'fuzzy'"):
        retriever.search("volcano", mode="fuzzy")
    with pytest.raises(StageError, match=r"chunks.jsonl: missing; run the index stage"):
        Retriever.load(tmp_path / "nothing")


def test_retrieval_evaluation_finds_the_chunk_with_the_answer(built_index):
    """Chunk-level recall/MRR per retriever: a question whose reference answer is in one chunk is judged."""
    from stages.index.evaluate import evaluate_retrievers
    from stages.inference.reranker import load_reranker

    retriever = Retriever.load(built_index / "index")
    questions = [{"instruction": "When did Mount Zorblax erupt?",
                  "output": "Mount Zorblax erupted in 1887 and buried the valley of Quenth under ash."},
                 {"instruction": "Why does sourdough rise?", "output": BAKING},
                 {"instruction": "Who wrote Hamlet?", "output": "Shakespeare wrote Hamlet."}]  # in no chunk
    metrics = evaluate_retrievers(retriever, questions, load_reranker(None))
    assert metrics["questions"] == 2 and metrics["questions_without_relevant_chunk"] == 1
    for name in ("bm25", "embedding", "hybrid", "hybrid_rerank", "rerank_only"):
        assert metrics[name]["recall_at_1"] == 1.0 and metrics[name]["mrr_at_10"] == 1.0, (name, metrics[name])
    with pytest.raises(StageError, match="no test answer appears in any indexed chunk"):
        evaluate_retrievers(retriever, questions[2:], load_reranker(None))


def test_reranked_order_fuses_the_reranker_with_both_retrievers():
    """A passage the reranker puts third but both retrievers put first beats one only the reranker likes."""
    def hit(name: str, bm25: int, embedding: int) -> Hit:
        return Hit(Chunk(name, name, name, name), 0.0, {"bm25": bm25, "embedding": embedding, "hybrid": 0})

    pool = [hit("agreed", 1, 1), hit("reranker-only", 12, 10), hit("middle", 2, 3)]
    reranked = [{"original_index": 1, "rank": 1, "score": 0.9}, {"original_index": 2, "rank": 2, "score": 0.5},
                {"original_index": 0, "rank": 3, "score": 0.2}]
    fused = fuse_reranked(pool, reranked, top_k=3)
    assert [h.chunk.chunk_id for h in fused] == ["agreed", "middle", "reranker-only"]
    assert fused[0].score == pytest.approx(2 / (RRF_K + 1) + 1 / (RRF_K + 3), abs=1e-6)
    assert fused[0].rerank_score == 0.2 and fused[0].ranks["rerank"] == 3
    assert len(fuse_reranked(pool, reranked, top_k=1)) == 1
    with pytest.raises(ValueError, match="scored 2 of 3 pooled passages"):
        fuse_reranked(pool, reranked[:2], top_k=1)


def test_search_with_a_reranker_carries_every_rank(built_index):
    from stages.inference.reranker import load_reranker

    retriever = Retriever.load(built_index / "index")
    hits = retriever.search("When did Mount Zorblax erupt?", top_k=3, reranker=load_reranker(None), candidates=5)
    assert len(hits) == 3 and hits[0].chunk.doc_id == "volcano.md"
    for h in hits:
        assert set(h.ranks) == {"bm25", "embedding", "hybrid", "rerank"} and 0 <= h.rerank_score <= 1
        expected = sum(1 / (RRF_K + h.ranks[m]) for m in ("bm25", "embedding", "rerank"))
        assert h.score == pytest.approx(expected, abs=1e-6)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
