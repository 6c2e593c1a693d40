"""The seed's REST API under /api/v1: health, model info, generate, batch generate, rerank, shutdown."""

# No `from __future__ import annotations` here: FastAPI must see the per-app request classes (S.*) as objects.
import time
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from starlette.background import BackgroundTask

from serving.domains import Choice, choose
from serving.prompts import default_system_prompt
from serving.schemas import BatchGenerateResponse, GenerateResponse, RerankResponse, RerankResult
from serving.security import admin_check, api_key_check
from serving.service import ServingContext, error_responses, http_error
from serving.worker import EngineWorker, NotReady
from stages.inference import Generation, SamplingParams


def sampling_params(body) -> SamplingParams:
    return SamplingParams(max_new_tokens=body.max_tokens, temperature=body.temperature, top_p=body.top_p,
                          top_k=body.top_k, stop=tuple(body.stop), seed=body.seed, min_p=body.min_p,
                          repeat_penalty=body.repeat_penalty)


def public_finish_reason(generation: Generation) -> str:
    return "length" if generation.finish_reason == "length" else "stop"


def reranker_status(ctx: ServingContext) -> dict:
    if ctx.rerank is None:
        return {"state": "disabled", "detail": "serve.rerank=false"}
    worker = ctx.rerank.worker
    if worker.state == "ready":
        info = worker.engine.info()
        if info.get("path"):
            info["path"] = Path(info["path"]).name
        return {"state": "ready", **info}
    return {"state": worker.state, "detail": worker.describe_not_ready()}


def component_status(worker: EngineWorker | None, disabled_detail: str) -> dict:
    """One component's readiness for /health: its state, whether it serves requests, and why not."""
    if worker is None:
        return {"state": "disabled", "ready": False, "detail": disabled_detail}
    state = worker.state  # read once: the loader thread may change it meanwhile
    status = {"state": state, "ready": state == "ready"}
    if state != "ready":
        status["detail"] = worker.describe_not_ready(state)
    return status


def health_status(ctx: ServingContext) -> tuple[int, dict]:
    """200 "ok" only when every enabled component is ready; else 503 naming the first one that is not
    (the model first), so a load balancer never routes to a server whose /rerank would still answer 503."""
    components = {"model": component_status(ctx.generation.worker, ""),
                  "reranker": component_status(ctx.rerank.worker if ctx.rerank else None, "serve.rerank=false")}
    if ctx.router is not None:  # `auto` needs it: reported, and waited for, only where adapters are served
        components["router"] = component_status(ctx.router.worker, "")
    blocking = next((c for c in components.values() if c["state"] != "disabled" and not c["ready"]), None)
    body = {"status": blocking["state"] if blocking else "ok",
            "model_loaded": components["model"]["ready"], "components": components}
    if blocking:
        body["detail"] = blocking["detail"]
    return (503 if blocking else 200), body


def build_api_routers(ctx: ServingContext) -> list[APIRouter]:
    """Two routers under /api/v1: health without auth (load balancers probe it), the rest behind the key."""
    S = ctx.schemas
    settings = ctx.settings
    open_router = APIRouter(prefix="/api/v1", tags=["seed API"])
    router = APIRouter(prefix="/api/v1", tags=["seed API"], dependencies=[Depends(api_key_check(settings.api_key))],
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
        choices = [await choose(ctx, request, body.domain, p, field="domain") for p in prompts]
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

    @open_router.get("/health", summary="Readiness of the model and the reranker (no API key needed)",
                     responses={503: {"description": "the model or the enabled reranker is not ready "
                                                     "(loading, failed or shutting down)"}})
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

    @router.post("/shutdown", summary="Stop the server gracefully (admin token required)",
                 dependencies=[Depends(admin_check(settings.admin_token))],
                 responses={403: {"description": "disabled: no serve.admin_token configured"}})
    async def shutdown(request: Request) -> JSONResponse:
        # The answer goes out first; in-flight requests then finish before the process exits.
        return JSONResponse({"status": "shutting down"},
                            background=BackgroundTask(request.app.state.request_shutdown))

    return [open_router, router]


async def run_rerank(ctx: ServingContext, request: Request, query: str, documents: list[str],
                     top_k: int | None) -> tuple[list[dict], str]:
    """Rerank on the reranker's own worker (torch), never on the generation worker's thread."""
    if ctx.rerank is None:
        raise HTTPException(503, "reranking is disabled on this server (serve.rerank=false)")
    ranked = await ctx.rerank.run(request, lambda r, job: (r.rerank(query, documents, top_k=top_k), r.info()))
    return ranked[0], ranked[1].get("type", "unknown")
