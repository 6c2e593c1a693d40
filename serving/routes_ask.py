"""POST /api/v1/ask: retrieve passages from the index (hybrid BM25 + MiniLM, optionally reranked), answer from
them with the served model, and return the passages as numbered citations.

The prompt (stages/inference/grounding.py, shared with the grounded stage) numbers the passages and
asks the model to answer from them and cite by number. Every `[n]` in the
answer is checked against the passages given: numbers that do not exist are removed from the answer and listed
in `invalid_citations`, so a client never follows a citation to nothing.
"""

# No `from __future__ import annotations`: FastAPI must see the per-app request class (S.AskRequest) as an object.

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel, Field

from serving.domains import choose
from serving.prompts import default_system_prompt
from serving.route_helpers import (
    checked_citations,
    conversation,
    fit_to_context,
    public_finish_reason,
    retrieve,
    sampling_params,
)
from serving.schemas import Citation, Usage
from serving.security import api_key_check
from serving.service import ServingContext, error_responses


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


def build_ask_router(ctx: ServingContext) -> APIRouter:
    S = ctx.schemas
    settings = ctx.settings
    router = APIRouter(prefix="/api/v1", tags=["seed API"], dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))],
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
        answer, cited, invalid = checked_citations(ctx, generation.text, len(citations))
        return AskResponse(answer=answer, citations=citations, cited=cited, invalid_citations=invalid,
                           finish_reason=public_finish_reason(generation),
                           usage=Usage(prompt_tokens=generation.prompt_tokens,
                                       completion_tokens=generation.completion_tokens,
                                       total_tokens=generation.prompt_tokens + generation.completion_tokens),
                           retrieval=retrieval, **choice.fields())

    return router
