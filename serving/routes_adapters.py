"""Domain adapters loaded and unloaded while serving (admin token), and the list of those served.

    curl -X POST localhost:8000/api/v1/adapters -H "Authorization: Bearer $ADMIN" \
         -d '{"domain": "tax", "path": "models/adapters/tax/adapter.gguf"}'
    curl -X DELETE localhost:8000/api/v1/adapters/tax -H "Authorization: Bearer $ADMIN"
    curl localhost:8000/api/v1/adapters

A loaded adapter is served at once (`domain-llm-<domain>` in /v1/models, the seed API's `domain`, and `auto`
routing when its file carries routing examples); requests of other domains keep decoding meanwhile (the decode
lanes only pause for the adapter's allocation). A file that is not a LoRA adapter GGUF of the served base is a
422 naming it, and nothing changes. Unloading refuses new requests for the domain at once, lets its requests in
flight finish, then frees it. Relative paths mean the project root, like every serve.* path.
"""

# No `from __future__ import annotations` here: FastAPI must see the request classes as objects.
import asyncio
import json
import logging
from pathlib import Path

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from serving.security import admin_check, api_key_check
from serving.service import ServingContext, error_responses
from stages.errors import StageError
from stages.inference.adapters import AdapterFacts, DomainRouter, check_domain_name
from stages.manifest import MANIFEST, sha256_file

log = logging.getLogger(__name__)


class LoadAdapterRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    domain: str = Field(description="the domain's name: lowercase letters, digits, '-' or '_'; served as "
                                    "domain-llm-<domain>", examples=["tax"])
    path: str = Field(max_length=4096, description="the adapter GGUF (absolute, or relative to the project root)",
                      examples=["models/adapters/tax/adapter.gguf"])


def adapter_entry(domain: str, facts: AdapterFacts, routed: bool) -> dict:
    return {"domain": domain, "model": f"domain-llm-{domain}", "path": str(facts.path),
            "size_bytes": facts.path.stat().st_size if facts.path.is_file() else None,
            "system_prompt": facts.system_prompt, "routing_examples": len(facts.routing_examples), "routed": routed}


def check_base(ctx: ServingContext, path: Path) -> None:
    """An adapter published by the pipeline has a manifest.json beside it naming its base GGUF: it must be the
    served one (llama.cpp only checks tensor shapes, which another base of the same size would pass)."""
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        return
    try:
        base = json.loads(manifest_path.read_text(encoding="utf-8"))["base"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise StageError(f"{manifest_path}: unreadable adapter manifest ({e})") from None
    model = Path(ctx.settings.model)
    if base.get("file") != model.name or base.get("sha256") != sha256_file(model):
        raise StageError(f"{path}: made for {base.get('file')!r} (its manifest.json), not the served "
                         f"{model.name}; publish it for this base")


def build_adapters_router(ctx: ServingContext) -> APIRouter:
    settings = ctx.settings
    router = APIRouter(prefix="/api/v1", tags=["seed API"], responses=error_responses(settings))
    admin = [Depends(admin_check(settings.admin_token))]
    admin_responses = {401: {"description": "missing or invalid admin token"},
                       403: {"description": "disabled: no serve.admin_token configured"},
                       409: {"description": "the engine cannot load adapters, or the domain is already served"},
                       422: {"description": "not a LoRA adapter GGUF of the served base (the message says why)"}}
    lock = asyncio.Lock()  # one change at a time, so ctx.domains and the router never disagree

    def engine():
        worker = ctx.generation.worker
        if worker.state != "ready":
            raise HTTPException(503, f"the model is {worker.state}; retry when /api/v1/health is ready",
                                headers={"Retry-After": "5"})
        if not hasattr(worker.engine, "load_adapter"):
            raise HTTPException(409, f"serve.engine={settings.engine} cannot load LoRA adapters while serving; "
                                     "use serve.engine=gguf")
        return worker.engine

    def routed(domain: str) -> bool:
        router_engine = ctx.router.worker.engine if ctx.router is not None else None
        return router_engine is not None and domain in router_engine.domains

    async def update_router(request: Request) -> None:
        """`auto` routes to the domains served now whose files carry routing examples: the router is made again
        on its worker (embedding every domain's examples: a few hundred short texts) and replaces the old one."""
        if ctx.router is None or ctx.router.worker.state != "ready":
            return
        examples = {d: f.routing_examples for d, f in ctx.domains.items() if f.routing_examples}
        if examples:
            router = await ctx.router.run(request, lambda old, job: DomainRouter(examples, old.embed))
            ctx.router.worker.engine = router

    @router.get("/adapters", summary="The domain adapters served now",
                dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))])
    async def list_adapters() -> dict:
        return {"adapters": [adapter_entry(d, f, routed(d)) for d, f in ctx.domains.items()]}

    @router.post("/adapters", status_code=201, dependencies=admin, responses=admin_responses,
                 summary="Load a domain's LoRA adapter GGUF and serve it now (admin token required)")
    async def load_adapter(body: LoadAdapterRequest, request: Request) -> JSONResponse:
        try:
            domain = check_domain_name(body.domain, "domain")
        except StageError as e:
            raise HTTPException(422, str(e)) from None
        async with lock:
            if domain in ctx.domains:
                raise HTTPException(409, f"domain {domain!r} is already served ({ctx.domains[domain].path}); "
                                         f"DELETE /api/v1/adapters/{domain} first")
            path = settings.resolve(body.path)
            served = engine()
            try:
                await asyncio.to_thread(check_base, ctx, path)
                facts = await asyncio.to_thread(served.load_adapter, domain, path)
            except StageError as e:
                raise HTTPException(422, str(e)) from None
            ctx.domains = {**ctx.domains, domain: facts}
            await update_router(request)
        log.info("adapter %s loaded from %s", domain, path)
        return JSONResponse(adapter_entry(domain, facts, routed(domain)), status_code=201)

    @router.delete("/adapters/{domain}", dependencies=admin, responses=admin_responses,
                   summary="Stop serving a domain's adapter and free it (admin token required)")
    async def unload_adapter(domain: str, request: Request) -> dict:
        async with lock:
            if domain not in ctx.domains:
                raise HTTPException(404, f"domain {domain!r} is not served (GET /api/v1/adapters)")
            served = engine()
            facts = ctx.domains[domain]
            ctx.domains = {d: f for d, f in ctx.domains.items() if d != domain}  # new requests: 404 from now
            await update_router(request)
            try:
                await asyncio.to_thread(served.unload_adapter, domain, settings.request_timeout_s)
            except StageError as e:
                raise HTTPException(404, str(e)) from None
        log.info("adapter %s unloaded", domain)
        return {"unloaded": adapter_entry(domain, facts, False)}

    return router
