"""What several route modules share: sampling settings from a request body, the public finish reason, and
running the reranker and the retriever on their own workers (so no route module imports another).

    params = sampling_params(body)
    citations, retrieval = await retrieve(ctx, request, question, top_k)
    messages, citations = fit_to_context(engine, messages, citations, max_tokens)
"""

import time

from fastapi import HTTPException, Request

from serving.schemas import Citation
from serving.service import ServingContext
from stages.inference import Generation, SamplingParams
from stages.inference.grounding import Passage, check_citations, grounded_messages
from stages.inference.retrieval import fuse_reranked, reranker_text


def sampling_params(body) -> SamplingParams:
    return SamplingParams(max_new_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=body.top_k, stop=tuple(body.stop), seed=body.seed, min_p=body.min_p,
                          repeat_penalty=body.repeat_penalty)


def public_finish_reason(generation: Generation) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


async def run_rerank(ctx: ServingContext, request: Request, query: str, documents: list[str],
                     top_k: int | None) -> tuple[list[dict], str]:
    """Rerank on the reranker's own worker (torch), never on the generation worker's thread."""
    if ctx.rerank is None:
        raise HTTPException(503, "reranking is disabled on this server (serve.rerank=false)")
    ranked = await ctx.rerank.run(request, lambda r, job: (r.rerank(query, documents, top_k=top_k), r.info()))
    return ranked[0], ranked[1].get("type", "unknown")


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
        ranked, kind = await ctx.rerank.run(request, lambda r, job: (r.rerank(question, texts), r.info().get("type")))
        hits = fuse_reranked(hits, ranked, top_k)
    citations = [Citation(number=n, doc_id=h.chunk.doc_id, title=h.chunk.title, chunk=h.chunk.text,
                          score=h.score, rerank_score=h.rerank_score) for n, h in enumerate(hits, start=1)]
    seconds = time.perf_counter() - started
    if ctx.metrics is not None:
        ctx.metrics.retrieval.observe(seconds)
    return citations, {"mode": "hybrid", "reranked": rerank, **({"reranker": kind} if rerank else {}),
                       "seconds": round(seconds, 4)}


def checked_citations(ctx: ServingContext, answer: str, available: int) -> tuple[str, list[int], list[int]]:
    """check_citations, counted for /metrics."""
    answer, cited, invalid = check_citations(answer, available)
    if ctx.metrics is not None:
        ctx.metrics.citations.labels("valid").inc(len(cited))
        ctx.metrics.citations.labels("invalid").inc(len(invalid))
    return answer, cited, invalid
