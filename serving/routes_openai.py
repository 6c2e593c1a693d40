"""OpenAI-compatible API under /v1: models, completions, chat/completions (SSE streaming), rerank (Cohere/Jina).

Works with the official `openai` client: `OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="...")`.
"""

# No `from __future__ import annotations` here: FastAPI must see the per-app request classes (S.*) as objects.
import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Callable

from fastapi import APIRouter, Depends, HTTPException, Request, Response
from fastapi.responses import StreamingResponse

from serving.domains import choose, served_model_ids
from serving.prompts import default_system_prompt
from serving.route_helpers import (
    checked_citations,
    fit_to_context,
    public_finish_reason,
    retrieve,
    run_rerank,
)
from serving.schemas import RerankV1Document, RerankV1Response, RerankV1Result
from serving.security import api_key_check
from serving.service import ServingContext, error_responses
from serving.structured import grammar_for
from serving.tools import ToolPlan, plan_tools
from stages.errors import StageError
from stages.inference import Generation, SamplingParams
from stages.inference.logprobs import openai_chat_logprobs, openai_completion_logprobs
from stages.inference.messages import last_user_turn

# 200 is JSON, or an SSE stream with stream=true.
JSON_OR_SSE = {200: {"content": {"application/json": {}, "text/event-stream": {}},
                     "description": "the completion, or with stream=true its chunks as server-sent events"}}
SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
DEFAULT_CHAT_MAX_TOKENS = 256


def sse(obj: dict | str) -> str:
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(generations: list[Generation]) -> dict:
    prompt = sum(g.prompt_tokens for g in generations)
    completion = sum(g.completion_tokens for g in generations)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def model_template(ctx: ServingContext) -> str | None:
    """The served model's chat template (tools are rendered and parsed here, so the engine must have one)."""
    contract = getattr(ctx.generation.worker.engine, "contract", None)
    if contract is None:
        raise HTTPException(501, "tools: this engine (serve.engine=openai_upstream) renders no chat template "
                                 "here, so it cannot take tools; send them to the upstream server directly")
    return contract.template


async def tool_call_events(stream: tuple, plan: ToolPlan, base: dict, head_fields: dict,
                           include_usage: bool) -> AsyncIterator[str]:
    """SSE of a chat answer with tools: the role chunk, then `tool_calls` deltas (id and name once a call's
    name is written, then its arguments as they come) or content deltas, then the finish chunk."""
    first, rest = stream

    def chunk(delta: dict, finish: str | None = None) -> str:
        return sse({**base, "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]})

    yield chunk({"role": "assistant", "content": ""}) if not head_fields else sse(
        {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None,
                              "finish_reason": None}], **head_fields})
    calls_stream, mode, held = plan.stream(), "calls" if plan.constrained else "wait", ""

    async def pieces():
        if first:
            yield "piece", first
        async for item in rest:
            yield item

    async for kind, value in pieces():
        if kind == "piece":
            if mode == "wait":
                held += value
                mode = plan.auto_mode(held)
                if mode == "text":
                    yield chunk({"content": held})
                value = held if mode == "calls" else ""
            if mode == "calls":
                for delta in calls_stream.feed(value):
                    yield chunk({"tool_calls": [delta]})
            elif mode == "text" and value:
                yield chunk({"content": value})
        elif kind == "error":
            yield sse({"error": {"message": value.detail, "type": "server_error", "code": value.status_code}})
        else:
            finish = public_finish_reason(value)
            if mode == "calls":
                calls = calls_stream.finish()
                if calls:  # calls the incremental reading missed (an `auto` answer in another key order)
                    for index, call in enumerate(calls[len(calls_stream.calls):], start=len(calls_stream.calls)):
                        yield chunk({"tool_calls": [call.openai(index)]})
                    finish = "tool_calls"
                elif not calls_stream.calls:  # not calls after all: the held answer is text
                    yield chunk({"content": calls_stream.text})
            elif mode == "wait" and held:
                yield chunk({"content": held})
            yield chunk({}, finish)
            if include_usage:
                yield sse({**base, "choices": [], "usage": usage([value])})
    yield sse("[DONE]")


def chat_logprobs(records: list | None) -> dict | None:
    return openai_chat_logprobs(records) if records is not None else None


def token_text(ctx: ServingContext, ids: list[int]) -> str:
    """The text of a token-id prompt (to route it by meaning), read with the served model's vocabulary."""
    engine = ctx.generation.worker.engine
    return b"".join(engine.detokenize(i) for i in ids[:512]).decode("utf-8", errors="replace")


def build_openai_router(ctx: ServingContext) -> APIRouter:
    S = ctx.schemas
    settings, limits = ctx.settings, ctx.settings.limits
    router = APIRouter(prefix="/v1", tags=["OpenAI-compatible API"],
                       dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))], responses=error_responses(settings))

    def params_of(body, max_tokens: int, grammar: str | None = None) -> SamplingParams:
        stop = (body.stop,) if isinstance(body.stop, str) else tuple(body.stop or ())
        return SamplingParams(max_new_tokens=max_tokens, temperature=body.temperature, top_p=body.top_p,
                              top_k=body.top_k, stop=stop, seed=body.seed, min_p=body.min_p,
                              repeat_penalty=body.repeat_penalty, frequency_penalty=body.frequency_penalty,
                              presence_penalty=body.presence_penalty, grammar=grammar)

    async def streamed(request: Request, start: Callable, make_chunk: Callable[[str | None, str | None], dict],
                       include_usage: bool, head: list[dict], headers: dict[str, str],
                       finish_extra: Callable[[str], dict] | None = None) -> StreamingResponse:
        """`finish_extra(text)`: fields added to the finish chunk, from the whole streamed text."""
        # Errors before the first token (queue full, prompt too long) still get a real status code.
        first, rest = await ctx.generation.stream(request, start)

        async def events() -> AsyncIterator[str]:
            pieces = [first] if first and finish_extra else []  # kept only when the finish chunk needs the text
            for chunk in head:
                yield sse(chunk)
            if first:
                yield sse(make_chunk(first, None))
            async for kind, value in rest:
                if kind == "piece":
                    if finish_extra:
                        pieces.append(value)
                    yield sse(make_chunk(value, None))
                elif kind == "error":
                    yield sse({"error": {"message": value.detail, "type": "server_error", "code": value.status_code}})
                else:
                    extra = finish_extra("".join(pieces)) if finish_extra else {}
                    yield sse({**make_chunk(None, public_finish_reason(value)), **extra})
                    if include_usage:
                        yield sse({**make_chunk(None, None), "choices": [], "usage": usage([value])})
            yield sse("[DONE]")

        return StreamingResponse(events(), media_type="text/event-stream", headers={**SSE_HEADERS, **headers})

    async def ground(request: Request, messages: list[dict], top_k: int,
                     max_tokens: int) -> tuple[list[dict], list, dict]:
        """Retrieve for the last user turn and put the numbered passages into the conversation."""
        question = last_user_turn(messages)
        if not question:
            raise HTTPException(422, "messages: retrieval needs a user message to retrieve for")
        citations, retrieval = await retrieve(ctx, request, question, top_k)
        retrieved = len(citations)
        messages, citations = fit_to_context(ctx.generation.worker.engine, messages, citations, max_tokens)
        retrieval["passages_dropped"] = retrieved - len(citations)
        return messages, citations, {"citations": [c.model_dump() for c in citations], "retrieval": retrieval}

    @router.get("/models", summary="The served models: the base, and one id per domain adapter")
    async def models() -> dict:
        return {"object": "list", "data": [{"id": model_id, "object": "model", "created": int(ctx.started),
                                            "owned_by": "domain-llm"} for model_id in served_model_ids(ctx)]}

    @router.post("/completions", responses=JSON_OR_SSE, summary="Text completion (raw prompt, no chat template); stream=true for SSE")
    async def completions(body: S.CompletionRequest, request: Request, response: Response):
        prompts = body.prompts
        if not isinstance(prompts[0], str):
            engine = ctx.generation.worker.engine
            if not hasattr(engine, "checked_ids"):
                raise HTTPException(501, "prompt: token ids need serve.engine=gguf; send text")
            try:
                for ids in prompts:
                    engine.checked_ids(ids)
            except StageError as e:
                raise HTTPException(422, str(e)) from None
        params = params_of(body, body.max_tokens)
        params.logprobs = body.logprobs
        routing_text = prompts[0] if isinstance(prompts[0], str) else token_text(ctx, prompts[0])
        choice = await choose(ctx, request, body.model, routing_text)  # several prompts: one model answers all
        response.headers.update(choice.headers)
        completion_id, created = f"cmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": completion_id, "object": "text_completion", "created": created, "model": choice.model_id,
                **choice.fields()}
        if body.stream:
            if len(prompts) > 1:
                raise HTTPException(422, "stream=true takes a single prompt, not a list")
            offset = 0

            def chunk(text: str | None, finish: str | None) -> dict:
                nonlocal offset
                records = getattr(text, "logprobs", None)
                logprobs = openai_completion_logprobs(records, offset) if records is not None else None
                offset += len(text or "")
                return {**base, "choices": [{"index": 0, "text": text or "", "logprobs": logprobs,
                                             "finish_reason": finish}]}
            include_usage = bool(body.stream_options and body.stream_options.include_usage)
            return await streamed(request, lambda e, should_stop: choice.engine(e).stream(prompts[0], params, should_stop),
                                  chunk, include_usage, head=[], headers=choice.headers)

        echoed: list[tuple[str, list]] = [("", [])] * len(prompts)  # echo: each prompt's text and records

        def run(e, job) -> list[Generation]:
            engine = choice.engine(e)
            if body.max_tokens:
                generations = engine.generate(prompts, params, job.should_stop)
            else:  # echo of the prompts only
                generations = [Generation("", 0, 0, "length", []) for _ in prompts]
            if body.echo:
                for i, prompt in enumerate(prompts):
                    ids = prompt if isinstance(prompt, list) else engine.prompt_ids(prompt)
                    text = prompt if isinstance(prompt, str) else b"".join(map(engine.detokenize, ids)).decode(
                        "utf-8", errors="replace")
                    records = engine.prompt_logprobs(ids, body.logprobs) if body.logprobs is not None else []
                    echoed[i] = (text, records)
                    generations[i].prompt_tokens = len(ids)
            return generations

        generations = await ctx.generation.run(request, run)
        choices = []
        for i, ((echo, prompt_records), g) in enumerate(zip(echoed, generations, strict=True)):
            logprobs = None
            if body.logprobs is not None:
                logprobs = openai_completion_logprobs([*prompt_records, *(g.logprobs or [])])
            choices.append({"index": i, "text": echo + g.text, "logprobs": logprobs,
                            "finish_reason": public_finish_reason(g)})
        return {**base, "choices": choices, "usage": usage(generations)}

    @router.post("/chat/completions", responses=JSON_OR_SSE, summary="Chat completion with the model's chat template; stream=true for SSE")
    async def chat_completions(body: S.ChatCompletionRequest, request: Request, response: Response):
        messages = [{**m.model_dump(exclude_none=True), "content": m.content or ""} for m in body.messages]
        tools = [t.model_dump(exclude_none=True) for t in body.tools or []]
        if sum(len(json.dumps(m)) for m in messages + tools) > 2 * limits.max_prompt_chars:
            raise HTTPException(422, f"messages and tools: longer than 2 x serve.max_prompt_chars "
                                     f"({limits.max_prompt_chars}) characters of JSON")
        if sum(len(m["content"]) for m in messages) > limits.max_prompt_chars:
            raise HTTPException(422, f"messages: total content longer than {limits.max_prompt_chars} characters "
                                     "(serve.max_prompt_chars)")
        tool_plan = plan_tools(model_template(ctx) if tools else None, tools, body.tool_choice and (
            body.tool_choice if isinstance(body.tool_choice, str) else body.tool_choice.model_dump()),
            body.parallel_tool_calls)
        question = last_user_turn(messages) or messages[-1]["content"]
        choice = await choose(ctx, request, body.model, question)
        response.headers.update(choice.headers)
        system_prompt = default_system_prompt(ctx, choice.adapter)
        if system_prompt and messages[0]["role"] != "system":
            # The model was fine-tuned with its system prompt; a client's own system message wins.
            messages.insert(0, {"role": "system", "content": system_prompt})
        max_tokens = body.max_completion_tokens or body.max_tokens or min(DEFAULT_CHAT_MAX_TOKENS,
                                                                           limits.max_tokens_limit)
        response_format = body.response_format.model_dump(by_alias=True) if body.response_format else None
        if response_format and response_format["type"] != "text" and tool_plan and tool_plan.constrained:
            raise HTTPException(422, "response_format: cannot be combined with tool_choice required or a named "
                                     "function (the call follows its own schema); send one of them")
        # Off the event loop: translating a large schema takes a while.
        grammar = await asyncio.to_thread(tool_plan.grammar if tool_plan and tool_plan.constrained
                                          else lambda: grammar_for(response_format))
        params = params_of(body, max_tokens, grammar)
        params.logprobs = (body.top_logprobs or 0) if body.logprobs else None
        grounding, citations = {}, []
        if body.retrieval is not None:  # extension: the passages go into the prompt, citations into the response
            messages, citations, grounding = await ground(request, messages, body.retrieval.top_k, max_tokens)
        completion_id, created = f"chatcmpl-{uuid.uuid4().hex}", int(time.time())
        base = {"id": completion_id, "object": "chat.completion.chunk", "created": created, "model": choice.model_id,
                **choice.fields()}

        def checked(text: str) -> tuple[str, dict]:
            """With retrieval: the text without citation numbers no passage has, and which were cited."""
            if body.retrieval is None:
                return text, {}
            text, cited, invalid = checked_citations(ctx, text, len(citations))
            return text, {"cited": cited, "invalid_citations": invalid}

        include_usage = bool(body.stream_options and body.stream_options.include_usage)
        if tool_plan is not None:  # the answer is calls or text, as the plan reads it
            if body.stream and body.logprobs:
                raise HTTPException(422, "logprobs: not with tools and stream=true; send one of them")
            messages, template_tools = tool_plan.render_inputs(messages)

            def prompt_of(engine) -> str:
                return engine.apply_chat_template(messages, tools=template_tools)
            if body.stream:
                started = await ctx.generation.stream(request, lambda e, should_stop: choice.engine(e).stream(
                    prompt_of(choice.engine(e)), params, should_stop))
                events = tool_call_events(started, tool_plan, base, grounding, include_usage)
                return StreamingResponse(events, media_type="text/event-stream", headers={**SSE_HEADERS, **choice.headers})
            [g] = await ctx.generation.run(request, lambda e, job: choice.engine(e).generate(
                [prompt_of(choice.engine(e))], params, job.should_stop))
            calls = tool_plan.parse(g.text)
            message = {"role": "assistant", "content": None, "tool_calls": [c.openai() for c in calls]} if calls \
                else {"role": "assistant", "content": g.text}
            return {**base, "object": "chat.completion", "usage": usage([g]), **grounding,
                    "choices": [{"index": 0, "message": message, "logprobs": chat_logprobs(g.logprobs),
                                 "finish_reason": "tool_calls" if calls else public_finish_reason(g)}]}
        if body.stream:
            def chunk(text: str | None, finish: str | None) -> dict:
                delta = {"content": text} if text is not None else {}
                logprobs = chat_logprobs(getattr(text, "logprobs", None))
                return {**base, "choices": [{"index": 0, "delta": delta, "logprobs": logprobs,
                                             "finish_reason": finish}]}
            role_chunk = {**base, "choices": [{"index": 0, "delta": {"role": "assistant", "content": ""},
                                               "logprobs": None, "finish_reason": None}], **grounding}
            # Streamed text is already sent: the finish chunk reports the cited and the non-existent numbers.
            return await streamed(request, lambda e, should_stop: choice.engine(e).stream_chat(messages, params, should_stop),
                                  chunk, include_usage, head=[role_chunk], headers=choice.headers,
                                  finish_extra=(lambda text: checked(text)[1]) if body.retrieval else None)
        [g] = await ctx.generation.run(request, lambda e, job: choice.engine(e).chat([messages], params, job.should_stop))
        content, citation_fields = checked(g.text)
        return {**base, "object": "chat.completion",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": content},
                             "logprobs": chat_logprobs(g.logprobs),
                             "finish_reason": public_finish_reason(g)}], "usage": usage([g]),
                **grounding, **citation_fields}

    if ctx.rerank is None:  # serve.rerank=false: no rerank routes at all (404)
        return router

    @router.post("/rerank", response_model=RerankV1Response, response_model_exclude_none=True,
                 summary="Rerank in the Cohere/Jina shape")
    async def rerank(body: S.RerankV1Request, request: Request) -> RerankV1Response:
        documents = [d if isinstance(d, str) else d.text for d in body.documents]
        too_long = next((i for i, d in enumerate(documents) if len(d) > limits.max_document_chars), None)
        if too_long is not None:
            raise HTTPException(422, f"documents[{too_long}]: longer than {limits.max_document_chars} characters "
                                     "(serve.max_document_chars)")
        ranked, kind = await run_rerank(ctx, request, body.query, documents, body.top_n)
        results = [RerankV1Result(index=r["original_index"], relevance_score=r["score"],
                                  document=RerankV1Document(text=r["document"]) if body.return_documents else None)
                   for r in ranked]
        return RerankV1Response(model=body.model or kind, results=results)

    return router
