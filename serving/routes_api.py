"""The seed's REST API under /api/v1: health, model info, generate, batch generate, rerank, shutdown."""

# No `from __future__ import annotations` here: FastAPI must see the per-app request classes (S.*) as objects.
import time
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from serving.components import health_status
from serving.domains import Choice, choose_many
from serving.prompts import default_system_prompt
from serving.route_helpers import public_finish_reason, run_rerank, sampling_params
from serving.schemas import BatchGenerateResponse, GenerateResponse, RerankResponse, RerankResult
from serving.security import admin_check, api_key_check
from serving.service import ServingContext, error_responses, http_error
from serving.worker import NotReady
from stages.inference import Generation


def reranker_status(ctx: ServingContext) -> dict:
    if ctx.rerank is None:
        return {"state": "disabled", "detail": "serve.rerank=false"}
    worker = ctx.rerank.worker
    component = ctx.components.get("reranker")
    # what start-up found: a configured reranker that is missing, or one not served (below its bi-encoder)
    said = {"detail": component.missing or component.note} if component and (component.missing or component.note) else {}
    if worker.state == "ready":
        info = worker.engine.info()
        if info.get("path"):
            info["path"] = Path(info["path"]).name
        return {"state": "ready", **info, **said}
    return {"state": worker.state, "detail": worker.describe_not_ready()}


def build_api_routers(ctx: ServingContext) -> list[APIRouter]:
    """Two routers under /api/v1: health and shutdown without the API key (load balancers probe health;
    shutdown has its own admin token, which must work whether or not an API key is set), the rest behind it."""
    S = ctx.schemas
    settings = ctx.settings
    open_router = APIRouter(prefix="/api/v1", tags=["seed API"])
    router = APIRouter(prefix="/api/v1", tags=["seed API"], dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))],
                       responses=error_responses(settings))
    generation_worker = ctx.generation.worker

    def conversation(prompt: str, system_prompt: str | None, adapter: str | None) -> list[dict]:
        # The request's own, else serve.system_prompt, else the one the answering model was trained with.
        system = system_prompt if system_prompt is not None else default_system_prompt(ctx, adapter)
        return ([{"role": "system", "content": system}] if system else []) + [{"role": "user", "content": prompt}]

    async def run_generation(request: Request, body, prompts: list[str]) -> tuple[list[Generation], list[Choice]]:
        """Each prompt answered by its domain's model (with `auto`, each is routed on its own); prompts of
        different domains still decode together."""
        params = sampling_params(body)
        choices = await choose_many(ctx, request, body.domain, prompts, field="domain")  # `auto`: one routing job
        adapters = [c.adapter for c in choices]

        def generate(engine, job) -> list[Generation]:
            conversations = [conversation(p, body.system_prompt, a) for p, a in zip(prompts, adapters, strict=True)]
            if len(set(adapters)) == 1:  # any engine (an upstream one sends the messages, not a rendered prompt)
                chosen = choices[0].engine(engine)
                if body.use_chat_template:
                    return chosen.chat(conversations, params, job.should_stop)
                return chosen.generate(prompts, params, job.should_stop)
            # Several domains: only the GGUF engine has adapters; their prompts still decode together.
            texts = [engine.apply_chat_template(c) for c in conversations] if body.use_chat_template else prompts
            return engine.generate(texts, params, job.should_stop, adapter=adapters)

        return await ctx.generation.run(request, generate), choices

    def response(prompt: str, g: Generation, choice: Choice) -> GenerateResponse:
        return GenerateResponse(generated_text=g.text, prompt=prompt, tokens_generated=g.completion_tokens,
                                prompt_tokens=g.prompt_tokens, finish_reason=public_finish_reason(g),
                                **choice.fields())

    @open_router.get("/health", summary="Readiness of every component (no API key needed)",
                     responses={503: {"description": "a required component (serve.require; default every enabled "
                                                     "one: model, adapters, router, reranker, index) is missing, "
                                                     "loading, failed or shutting down"}})
    async def health() -> JSONResponse:
        status_code, status = health_status(ctx)
        body = {**status, "model": ctx.model_id, "engine": settings.engine, "queue": generation_worker.stats(),
                "reranker": reranker_status(ctx)["state"], "uptime_s": round(time.time() - ctx.started, 1)}
        return JSONResponse(body, status_code=status_code)

    @router.get("/model/info", summary="Model and reranker metadata, read from the GGUF and its manifest")
    async def model_info() -> dict:
        if generation_worker.state != "ready":
            raise http_error(NotReady(generation_worker.describe_not_ready()), settings.request_timeout_s)
        info = generation_worker.engine.info()
        if info.get("path"):  # the file name only: clients have no business with the server's directory layout
            info["file"] = Path(info.pop("path")).name
        return {"model_id": ctx.model_id, "engine": settings.engine, **info,
                "default_system_prompt": default_system_prompt(ctx), "reranker": reranker_status(ctx)}

    @router.post("/generate", response_model=GenerateResponse, summary="Generate a completion for one prompt")
    async def generate(body: S.GenerateRequest, request: Request, http_response: Response) -> GenerateResponse:
        [g], [choice] = await run_generation(request, body, [body.prompt])
        http_response.headers.update(choice.headers)
        return response(body.prompt, g, choice)

    @router.post("/generate/batch", response_model=BatchGenerateResponse,
                 summary="Generate for several prompts in one queued job (decoded together)")
    async def generate_batch(body: S.BatchGenerateRequest, request: Request) -> BatchGenerateResponse:
        generations, choices = await run_generation(request, body, body.prompts)
        results = [response(p, g, c) for p, g, c in zip(body.prompts, generations, choices, strict=True)]
        return BatchGenerateResponse(results=results, total_prompts=len(results),
                                     total_tokens_generated=sum(r.tokens_generated for r in results))

    if ctx.rerank is not None:  # serve.rerank=false: no rerank routes at all (404)
        @router.post("/rerank", response_model=RerankResponse, summary="Order documents by relevance to a query")
        async def rerank(body: S.RerankRequest, request: Request) -> RerankResponse:
            ranked, kind = await run_rerank(ctx, request, body.query, body.documents, body.top_k)
            return RerankResponse(query=body.query, results=[RerankResult(**r) for r in ranked], reranker=kind)

    @open_router.post("/shutdown", summary="Stop the server gracefully (admin token required)",
                 dependencies=[Depends(admin_check(settings.admin_token))],
                 responses={401: {"description": "missing or invalid admin token"},
                            403: {"description": "disabled: no serve.admin_token configured"}})
    async def shutdown(request: Request) -> JSONResponse:
        # The answer goes out first; in-flight requests then finish before the process exits.
        return JSONResponse({"status": "shutting down"},
                            background=BackgroundTask(request.app.state.request_shutdown))

    return [open_router, router]
