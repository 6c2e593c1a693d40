"""The `train_reranker` stage and the reranker inference API used by serving (see main.py, inference.py)."""
