"""Which model answers a request: the base model, or one domain's LoRA adapter on it.

    adapters = resolve_adapters(settings)            # {"legal": AdapterFacts, ...}: serve.adapters or the manifest
    choice = await choose(ctx, request, body.model, question)
    generations = await ctx.generation.run(request, lambda e, job: choice.engine(e).chat(...))

A request names a model id from /v1/models (`domain-llm-<domain>`, or the base model's id), a bare domain name, or
`auto`; `auto` and no model at all route the question to the nearest domain by embedding (the bundled MiniLM
against each domain's example questions, on the router's own worker thread). The answer says which domain
answered: a `domain` field and the `X-Domain-LLM-Domain` header.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from serving.settings import ServeSettings
from stages.errors import StageError
from stages.inference.adapters import AdapterFacts, check_domain_name, read_adapter_facts
from stages.manifest import read_manifest

if TYPE_CHECKING:
    from serving.service import ServingContext

DOMAIN_PREFIX = "domain-llm-"
AUTO = "auto"
BASE = "base"
DOMAIN_HEADER = "X-Domain-LLM-Domain"


def resolve_adapters(settings: ServeSettings) -> dict[str, AdapterFacts]:
    """serve.adapters ({domain: file}) when set, else the adapters listed in the served model's manifest.json;
    each file's own metadata gives its system prompt and routing examples. Bad files -> StageError (one line)."""
    if settings.adapters is not None:
        files = {check_domain_name(str(d), f"serve.adapters.{d}"): Path(p) for d, p in settings.adapters.items()}
    elif settings.engine == "gguf":
        manifest = read_manifest(Path(settings.model)) or {}
        folder = Path(settings.model).parent
        files = {entry["domain"]: folder / entry["file"] for entry in manifest.get("adapters") or []}
    else:
        files = {}
    if files and settings.engine != "gguf":
        raise StageError(f"serve.adapters: per-request adapters need serve.engine=gguf (got {settings.engine!r})")
    reserved = {AUTO, BASE} & set(files)
    if reserved:
        raise StageError(f"serve.adapters: {sorted(reserved)[0]!r} is reserved for routing; rename that domain")
    return {domain: read_adapter_facts(path, domain) for domain, path in files.items()}


def domain_model_id(domain: str) -> str:
    return DOMAIN_PREFIX + domain


def served_model_ids(ctx: ServingContext) -> list[str]:
    return [ctx.model_id, *(domain_model_id(d) for d in ctx.domains)]


@dataclass
class Choice:
    domain: str | None  # who answers: a domain, or None for the base model
    model_id: str
    adapter: str | None = None  # the LoRA adapter that makes the answer (None: the served model as it is)
    routing: dict[str, float] | None = None  # `auto`: each domain's similarity to the question

    def engine(self, engine: Any) -> Any:
        return engine.for_adapter(self.adapter) if self.adapter else engine

    @property
    def headers(self) -> dict[str, str]:
        return {DOMAIN_HEADER: self.domain or BASE}

    def fields(self) -> dict:
        return {"domain": self.domain, **({"routing": self.routing} if self.routing is not None else {})}


async def choose(ctx: ServingContext, request: Request, requested: str | None, text: str,
                 field: str = "model") -> Choice:
    """The model for a request that asked for `requested` (a model id, a domain, auto, or None)."""
    if not ctx.domains:  # one model: the OpenAI `model` is informational; a seed-API domain must be its own
        served = (getattr(ctx.generation.worker.engine, "served", None) or {}).get("domain")
        name = (requested or "").removeprefix(DOMAIN_PREFIX)
        if field == "domain" and requested not in (None, AUTO, BASE) and served and name != served:
            raise HTTPException(422, f"domain: {requested!r} is not served here (this server: {served!r})")
        return Choice(served, ctx.model_id)
    if requested in (None, "", AUTO):
        if ctx.router is None:
            raise HTTPException(503, "routing is off on this server; name a domain")
        domain, scores = await ctx.router.run(request, lambda router, job: router.route(text))
        return Choice(domain, domain_model_id(domain), domain, scores)
    if requested in (ctx.model_id, BASE):
        return Choice(None, ctx.model_id)
    name = requested.removeprefix(DOMAIN_PREFIX)
    if name in ctx.domains:
        return Choice(name, domain_model_id(name), name)
    raise HTTPException(404, f"{field}: {requested!r} is not served here; use {AUTO} or one of "
                             f"{', '.join(served_model_ids(ctx))} (GET /v1/models)")
