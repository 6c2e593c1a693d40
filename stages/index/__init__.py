"""The index stage: documents -> overlapping chunks -> BM25 + MiniLM embedding index (models/index).

    domain-llm index --params params.yaml      # what dvc.yaml runs
    domain-llm index index.docs_dir=my_docs    # your own markdown / text / JSONL documents

Retrieval over the index (hybrid search, then the trained cross-encoder) is stages/inference/retrieval.py.
"""
