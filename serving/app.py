"""FastAPI app factory: `create_app(cfg)` wires settings, workers, routes, security and error bodies.

    from serving.app import create_app
    app = create_app(compose(["serve.model=models/gguf/model-q4_k_m.gguf"]))   # engine loads in the background
    app = create_app(cfg, engine=load_serving_engine(settings))                  # or pass a loaded one

`domain-llm serve` (serving/main.py) loads the engine first, so a missing or corrupt model stops it at once.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse, Response
from omegaconf import DictConfig
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.middleware.trustedhost import TrustedHostMiddleware

from serving.components import inspect_components
from serving.docs import add_offline_docs
from serving.domains import resolve_adapters
from serving.routes_adapters import build_adapters_router
from serving.routes_api import build_api_routers
from serving.routes_feedback import build_feedback_router
from serving.routes_openai import build_openai_router
from serving.routes_tokenize import build_tokenize_router
from serving.schemas import UNSUPPORTED_FIELD, build_schemas
from serving.security import BodyLimitMiddleware, RequestLogMiddleware, UISessions
from serving.service import ClientGone, JobRunner, ServingContext
from serving.settings import ServeSettings
from serving.worker import EngineWorker
from stages.errors import StageError

log = logging.getLogger(__name__)

DESCRIPTION = """
The domain model behind two APIs:

* **Seed API** under `/api/v1`: `GET /health`, `GET /model/info`, `POST /generate`, `POST /generate/batch`,
  `POST /rerank`, `POST /feedback` (a verdict on an answer, kept for preference tuning), `POST /shutdown`
  (admin token).
* **OpenAI-compatible** under `/v1`: `completions`, `chat/completions` (`stream: true` gives SSE ending with
  `data: [DONE]`), `models`, and `rerank` in the Cohere/Jina shape.

With the GGUF engine, up to `serve.parallel` requests decode together (continuous batching: one
`llama_decode` per step for all of them); others wait in a bounded queue. A full queue answers **429** with
`Retry-After`; a model that is not loaded answers **503**. Over-limit input answers **422** (**413** for the
body size). When `serve.api_key` is set, send `Authorization: Bearer <key>` (health and docs stay open).

```bash
curl -s http://127.0.0.1:8000/api/v1/generate -H 'Content-Type: application/json' \\
     -d '{"prompt": "What is hypertension?", "max_tokens": 64, "temperature": 0}'
```
```python
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="unused")
client.chat.completions.create(model="auto", messages=[{"role": "user", "content": "What is hypertension?"}])
```
"""


def load_serving_engine(settings: ServeSettings) -> Any:
    """The configured engine, loaded now. Missing/corrupt model or unreachable upstream -> StageError."""
    if settings.engine == "openai_upstream":
        from stages.inference.upstream import OpenAIUpstreamEngine

        return OpenAIUpstreamEngine(settings.upstream_url, settings.upstream_model, settings.upstream_api_key,
                                    timeout_s=settings.request_timeout_s,
                                    concurrent_requests=settings.upstream_workers,
                                    adapters=resolve_adapters(settings), adapter_mode=settings.upstream_adapters)
    from stages.inference import load_engine

    adapters = {domain: facts.path for domain, facts in resolve_adapters(settings).items()}
    if settings.engine == "gguf":  # the served engine has lanes (serve.lanes); the stages keep one context
        from stages.inference.gguf_engine import GGUFEngine

        return GGUFEngine(Path(settings.model), threads=settings.threads, n_ctx=settings.n_ctx,
                          parallel=settings.parallel, kv_unified=settings.kv_unified, flash_attn=settings.flash_attn,
                          adapters=adapters, lanes=settings.lanes, spare_lanes=settings.spare_lanes,
                          resident_adapters=settings.resident_adapters)
    return load_engine(settings.engine, settings.model, threads=settings.threads, n_ctx=settings.n_ctx,
                       batch_size=settings.batch_size, adapter=settings.adapter, parallel=settings.parallel,
                       kv_unified=settings.kv_unified, flash_attn=settings.flash_attn, adapters=adapters)


def public_model_id(settings: ServeSettings) -> str:
    """The id clients see in /v1/models: configured, else the file/folder name - never the path."""
    if settings.model_name:
        return settings.model_name
    if settings.engine == "openai_upstream":
        return settings.upstream_model or "upstream"
    return Path(settings.model).stem


def error_body(status: int, message: str, details: list | None = None) -> dict:
    """`detail` for FastAPI-style clients, `error` in OpenAI's shape for the openai client."""
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"detail": details if details is not None else message,
            "error": {"message": message, "type": kind, "code": status}}


def allowed_methods(request: Request) -> str:
    """Every method some route of the app answers on this request's path (the Allow header of a 405)."""
    path = request.scope["path"]
    methods = {m for route in request.app.routes if getattr(route, "methods", None)
               and getattr(route, "path_regex", None) is not None and route.path_regex.match(path)
               for m in route.methods}
    return ", ".join(sorted(methods))


def add_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        # A field we do not implement is refused by name, never accepted and ignored (serving/schemas.py).
        errors = [{**e, "msg": UNSUPPORTED_FIELD} if e["type"] == "extra_forbidden" else e for e in errors]
        messages = ["{}: {}".format(".".join(str(p) for p in e["loc"] if p != "body") or "body", e["msg"])
                    for e in errors]
        details = [{"loc": list(e["loc"]), "msg": e["msg"], "type": e["type"]} for e in errors]
        return JSONResponse(error_body(422, "; ".join(messages[:5]), details), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_exception(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # A 422 keeps FastAPI's documented shape (a list under `detail`) whoever raised it.
        details = [{"loc": ["body"], "msg": str(exc.detail), "type": "value_error"}] if exc.status_code == 422 else None
        headers = exc.headers
        if exc.status_code == 405:  # Starlette names the first route of the path only (GET and POST /adapters)
            headers = {**(headers or {}), "Allow": allowed_methods(request)}
        return JSONResponse(error_body(exc.status_code, str(exc.detail), details), status_code=exc.status_code,
                            headers=headers)

    @app.exception_handler(StageError)
    async def unusable_input(request: Request, exc: StageError) -> JSONResponse:
        # Input the model cannot take, found in a route itself (e.g. a chat template that cannot keep message
        # text apart from its control tokens); inside a job http_error maps it the same way.
        return JSONResponse(error_body(422, str(exc)), status_code=422)

    @app.exception_handler(ClientGone)
    async def client_gone(request: Request, exc: ClientGone) -> Response:
        return Response(status_code=499)


def limit_torch_threads(settings: ServeSettings) -> None:
    """serve.torch_threads for the torch work of the calling worker thread (router, reranker, index). Why: torch's
    OpenMP pool outlives each job in its long-lived worker thread, and libgomp (one copy per process, shared
    with llama.cpp) stops spin-waiting once it manages more threads than there are cores, so one idle torch
    pool of 2 made every llama.cpp decode step of this 2-core server ~1.5x slower (bench/results/adapter_speed.md).
    With 1 thread torch starts no pool."""
    import torch

    torch.set_num_threads(settings.torch_threads)


def create_app(cfg: DictConfig | ServeSettings, engine: Any = None) -> FastAPI:
    settings = cfg if isinstance(cfg, ServeSettings) else ServeSettings.from_config(cfg)
    loader = (lambda: engine) if engine is not None else (lambda: load_serving_engine(settings))
    # As many worker threads as the engine takes requests at once (its `concurrent_requests`): the GGUF
    # engine decodes `serve.parallel` sequences together on its own owner thread, an upstream client forwards
    # `serve.upstream_workers` requests, the HF engine takes one at a time.
    generation = EngineWorker("model", loader, settings.queue_size)
    # The domains are the adapters of the engine served: a caller's engine brought its own (or none); otherwise the
    # configured ones, checked now so that a bad adapter file stops the server here, naming it.
    domains = dict(getattr(engine, "adapters", None) or {}) if engine is not None else resolve_adapters(settings)
    components = inspect_components(settings, domains)
    rerank = None
    if settings.rerank:
        def load_reranker():
            from stages.inference.reranker import served_reranker

            limit_torch_threads(settings)
            # the bi-encoder when the trained one measured below it (what inspect_components reported)
            return served_reranker(settings.reranker, settings.rerank_below_biencoder)[0]
        rerank = EngineWorker("reranker", load_reranker, settings.queue_size)
    domain_router = None
    if domains:
        def load_router():
            from stages.inference.adapters import DomainRouter

            limit_torch_threads(settings)
            return DomainRouter({domain: facts.routing_examples for domain, facts in domains.items()})
        domain_router = EngineWorker("router", load_router, settings.queue_size)
    index = None
    if settings.index:
        missing_index = components["index"].missing

        def load_index():
            from stages.inference.retrieval import Retriever

            if missing_index:  # said at start-up; every /ask says it again (503) instead of a stack trace
                raise StageError(missing_index)
            limit_torch_threads(settings)
            return Retriever.load(settings.index)
        index = EngineWorker("index", load_index, settings.queue_size)

    embeddings = None
    if settings.embeddings:
        from serving.embeddings import load_embedder

        embeddings = EngineWorker("embeddings", lambda: load_embedder(settings), settings.queue_size)

    def runner(worker: EngineWorker | None) -> JobRunner | None:
        return JobRunner(worker, settings.request_timeout_s) if worker is not None else None

    schemas = build_schemas(settings.limits, settings.ask_top_k, settings.repeat_penalty)
    ctx = ServingContext(settings=settings, schemas=schemas,
                         generation=runner(generation), rerank=runner(rerank), model_id=public_model_id(settings),
                         index=runner(index), domains=domains, router=runner(domain_router),
                         components=components, sessions=UISessions(settings.api_key, settings.ui_session_hours),
                         embeddings=runner(embeddings))
    workers = [w for w in (generation, rerank, index, domain_router, embeddings) if w is not None]
    if settings.metrics:
        from serving.metrics import add_metrics

        add_metrics(ctx)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        for worker in workers:
            worker.start()
        yield
        # uvicorn has already let in-flight requests finish; drain whatever is still queued, then stop.
        for worker in workers:
            await asyncio.to_thread(worker.stop, settings.request_timeout_s)
        if engine is None and generation.engine is not None and hasattr(generation.engine, "close"):
            generation.engine.close()  # only what this app loaded; a caller's engine stays the caller's

    app = FastAPI(title="domain-llm API", version="0.1.0", description=DESCRIPTION, lifespan=lifespan,
                  docs_url=None, redoc_url=None)
    add_offline_docs(app)
    app.state.ctx = ctx
    # /shutdown's action; serving/main.py replaces it with uvicorn's own graceful exit.
    app.state.request_shutdown = lambda: os.kill(os.getpid(), signal.SIGTERM)
    add_error_handlers(app)
    for router in (*build_api_routers(ctx), build_openai_router(ctx), build_adapters_router(ctx),
                   build_tokenize_router(ctx), build_feedback_router(ctx)):
        app.include_router(router)
    if embeddings is not None:
        from serving.embeddings import build_embeddings_router

        app.include_router(build_embeddings_router(ctx))
    if index is not None:
        from serving.routes_ask import build_ask_router

        app.include_router(build_ask_router(ctx))
    if settings.ui:
        from serving.ui.routes import build_ui_router

        app.include_router(build_ui_router(settings, settings.root, served=True, sessions=ctx.sessions))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins),
                           allow_methods=["GET", "POST"], allow_headers=["Authorization", "Content-Type"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)
    # DNS rebinding: a page of another site whose name resolves to this machine must not reach the API.
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts())
    if ctx.metrics is not None:
        from serving.metrics import build_metrics_router

        app.include_router(build_metrics_router(ctx))
    # outermost: sees every request (and counts it for /metrics)
    app.add_middleware(RequestLogMiddleware, enabled=settings.log_requests, metrics=ctx.metrics)
    return app
