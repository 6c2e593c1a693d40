"""POST /api/v1/ask: retrieve passages from the index (hybrid BM25 + MiniLM, optionally reranked), answer from
them with the served model, and return the passages as numbered citations.

The prompt (stages/inference/grounding.py, shared with the grounded stage) numbers the passages and
asks the model to answer from them and cite by number. Every `[n]` in the
answer is checked against the passages given: numbers that do not exist are removed from the answer and listed
in `invalid_citations`, so a client never follows a citation to nothing.
"""

# No `from __future__ import annotations`: FastAPI must see the per-app request class (S.AskRequest) as an object.
import time

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from pydantic import BaseModel, Field

from serving.domains import choose
from serving.prompts import default_system_prompt
from serving.routes_api import public_finish_reason, sampling_params
from serving.security import api_key_check
from serving.service import ServingContext, error_responses
from stages.inference.grounding import Passage, check_citations, grounded_messages
from stages.inference.retrieval import fuse_reranked, reranker_text


class Citation(BaseModel):
    number: int = Field(description="the [n] the answer cites it by")
    doc_id: str
    title: str
    chunk: str = Field(description="the passage's text, as given to the model")
    score: float = Field(description="the retrieval score citations are ordered by: reciprocal rank fusion of "
                                     "BM25, embeddings and (when reranked) the reranker")
    rerank_score: float | None = Field(None, description="the reranker's relevance in 0..1; null when not reranked")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AskResponse(BaseModel):
    answer: str
    citations: list[Citation] = Field(description="the passages the model was given, numbered")
    cited: list[int] = Field(description="the passage numbers the answer cites (all exist in `citations`)")
    invalid_citations: list[int] = Field(description="numbers the model cited that no passage has (removed)")
    finish_reason: str
    usage: Usage
    retrieval: dict = Field(description="mode, whether reranked, seconds, passages dropped to fit the context")
    domain: str | None = Field(None, description="the domain whose model answered (null: the base model)")
    routing: dict[str, float] | None = Field(None, description="domain=auto: each domain's similarity")


def conversation(question: str, system: str | None) -> list[dict]:
    return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": question}]


def fit_to_context(engine, messages: list[dict], citations: list[Citation],
                   max_tokens: int) -> tuple[list[dict], list[Citation]]:
    """The grounded messages with as many of the best passages as fit the model's context per sequence (room
    left for max_tokens); the GGUF engine reports that size, other engines check prompts themselves."""
    limit = engine.info().get("n_ctx_per_sequence")
    kept = list(citations)
    while True:
        grounded = grounded_messages(messages, [Passage(c.title, c.chunk) for c in kept])
        if not limit or len(engine.prompt_ids(engine.apply_chat_template(grounded))) + max_tokens <= limit:
            return grounded, kept
        if len(kept) == 1:
            raise HTTPException(422, f"question: with the best passage and max_tokens {max_tokens} it exceeds the "
                                     f"model's context ({limit} tokens, serve.n_ctx); lower max_tokens or index "
                                     "smaller chunks (index.chunk_words)")
        kept.pop()


async def retrieve(ctx: ServingContext, request: Request, question: str, top_k: int) -> tuple[list[Citation], dict]:
    """The top_k passages for the question as numbered citations, and how they were found."""
    if ctx.index is None:
        raise HTTPException(422, "retrieval: this server has no document index (serve.index is null)")
    started = time.perf_counter()
    rerank = ctx.settings.ask_rerank and ctx.rerank is not None
    candidates = max(ctx.settings.ask_candidates, top_k) if rerank else top_k
    hits = await ctx.index.run(request, lambda r, job: r.search(question, candidates, "hybrid"))
    if rerank:
        # scored on the reranker's own worker thread, then fused as Retriever.search(reranker=...) does
        texts = [reranker_text(h.chunk) for h in hits]
        ranked = await ctx.rerank.run(request, lambda r, job: r.rerank(question, texts))
        hits = fuse_reranked(hits, ranked, top_k)
    citations = [Citation(number=n, doc_id=h.chunk.doc_id, title=h.chunk.title, chunk=h.chunk.text,
                          score=h.score, rerank_score=h.rerank_score) for n, h in enumerate(hits, start=1)]
    return citations, {"mode": "hybrid", "reranked": rerank, "seconds": round(time.perf_counter() - started, 4)}


def build_ask_router(ctx: ServingContext) -> APIRouter:
    S = ctx.schemas
    settings = ctx.settings
    router = APIRouter(prefix="/api/v1", tags=["seed API"], dependencies=[Depends(api_key_check(settings.api_key))],
                       responses=error_responses(settings))

    @router.post("/ask", response_model=AskResponse,
                 summary="Answer a question from the indexed documents, with numbered citations")
    async def ask(body: S.AskRequest, request: Request, http_response: Response) -> AskResponse:
        choice = await choose(ctx, request, body.domain, body.question, field="domain")
        http_response.headers.update(choice.headers)
        citations, retrieval = await retrieve(ctx, request, body.question, body.top_k)
        system = body.system_prompt if body.system_prompt is not None else default_system_prompt(ctx, choice.adapter)
        retrieved = len(citations)
        messages, citations = fit_to_context(ctx.generation.worker.engine, conversation(body.question, system),
                                             citations, body.max_tokens)
        # the lowest-ranked passages that did not fit the model's context
        retrieval["passages_dropped"] = retrieved - len(citations)
        params = sampling_params(body)
        [generation] = await ctx.generation.run(
            request, lambda e, job: choice.engine(e).chat([messages], params, job.should_stop))
        answer, cited, invalid = check_citations(generation.text, len(citations))
        return AskResponse(answer=answer, citations=citations, cited=cited, invalid_citations=invalid,
                           finish_reason=public_finish_reason(generation),
                           usage=Usage(prompt_tokens=generation.prompt_tokens,
                                       completion_tokens=generation.completion_tokens,
                                       total_tokens=generation.prompt_tokens + generation.completion_tokens),
                           retrieval=retrieval, **choice.fields())

    return router
