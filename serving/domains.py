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

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import HTTPException, Request

from serving.metrics import domain_label
from serving.settings import ADAPTER_ENGINES, ServeSettings
from stages.errors import StageError
from stages.inference.adapters import AdapterFacts, check_domain_name, read_adapter_facts
from stages.manifest import MANIFEST, sha256_file

if TYPE_CHECKING:
    from serving.service import ServingContext

log = logging.getLogger(__name__)

DOMAIN_PREFIX = "domain-llm-"
AUTO = "auto"
BASE = "base"
DOMAIN_HEADER = "X-Domain-LLM-Domain"


def published_adapters(adapter_dir: Path, model: Path) -> dict[str, Path]:
    """The adapters the pipeline published for this base model: adapter@<domain> writes
    <adapter_dir>/<domain>/{adapter.gguf, manifest.json}, the manifest naming the base GGUF (file and sha256)
    the adapter was measured on. Adapters of another base are skipped (logged)."""
    found: dict[str, Path] = {}
    if not model.is_file():
        return found
    base_sha = None
    for manifest_path in sorted(adapter_dir.glob(f"*/{MANIFEST}")):
        try:
            manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
            domain, base = manifest["domain"], manifest["base"]
            adapter = manifest_path.parent / manifest["adapter"]["file"]
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise StageError(f"{manifest_path}: unreadable adapter manifest ({e}); rerun `dvc repro adapter`") from None
        if base.get("file") != model.name:
            continue
        base_sha = base_sha or sha256_file(model)
        if base.get("sha256") != base_sha:
            log.warning("%s: made for another %s (sha256 differs); not served", adapter, model.name)
            continue
        found[domain] = adapter
    return found


def resolve_adapters(settings: ServeSettings) -> dict[str, AdapterFacts]:
    """serve.adapters ({domain: file}) when set, else the adapters published for the served model in
    serve.adapter_dir; each file's own metadata gives its system prompt and routing examples. Bad files ->
    StageError (one line). With an upstream engine these are the files the upstream loaded (the shared models
    volume): serve.model is the base GGUF it serves, read here only for its sha256."""
    if settings.adapters is not None:
        files = {check_domain_name(str(d), f"serve.adapters.{d}"): Path(p) for d, p in settings.adapters.items()}
    elif settings.engine in ADAPTER_ENGINES and settings.adapter_dir:
        files = published_adapters(Path(settings.adapter_dir), Path(settings.model))
    else:
        files = {}
    if files and settings.engine not in ADAPTER_ENGINES:
        raise StageError(f"serve.adapters: per-request adapters need serve.engine=gguf or openai_upstream "
                         f"(got {settings.engine!r})")
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


def one_model_ids(ctx: ServingContext) -> set[str | None]:
    """What a request may name on a server without adapters: its model id, `auto`/none, and the domain the one
    model was trained for (a merged model's manifest) or `base` when it is a plain base model."""
    served = (getattr(ctx.generation.worker.engine, "served", None) or {}).get("domain")
    return {None, "", AUTO, ctx.model_id, *((served, domain_model_id(served)) if served else (BASE,))}


def not_served(ctx: ServingContext, requested: str, field: str) -> HTTPException:
    ids = served_model_ids(ctx) if ctx.domains else sorted(i for i in one_model_ids(ctx) if i)
    return HTTPException(404, f"{field}: {requested!r} is not served here; use {AUTO} or one of "
                              f"{', '.join(i for i in ids if i != AUTO)} (GET /v1/models)")


def _fixed_choice(ctx: ServingContext, requested: str | None, field: str) -> Choice | None:
    """The choice a request's own words make, or None when it must be routed (`auto` or nothing)."""
    if not ctx.domains:  # one model answers everything it serves; any other name is a 404, never ignored
        if requested not in one_model_ids(ctx):
            raise not_served(ctx, requested, field)
        served = (getattr(ctx.generation.worker.engine, "served", None) or {}).get("domain")
        return Choice(served, ctx.model_id)
    if requested in (None, "", AUTO):
        return None
    if requested in (ctx.model_id, BASE):
        return Choice(None, ctx.model_id)
    name = requested.removeprefix(DOMAIN_PREFIX)
    if name in ctx.domains:
        return Choice(name, domain_model_id(name), name)
    raise not_served(ctx, requested, field)


async def choose(ctx: ServingContext, request: Request, requested: str | None, text: str,
                 field: str = "model") -> Choice:
    """The model for a request that asked for `requested` (a model id, a domain, auto, or None)."""
    [choice] = await choose_many(ctx, request, requested, [text], field)
    return choice


async def choose_many(ctx: ServingContext, request: Request, requested: str | None, texts: list[str],
                      field: str = "model") -> list[Choice]:
    """One choice per text; with `auto` every text is routed on its own, all in one router job (a batch of 16
    prompts is one job under the request's deadline, not 16)."""
    fixed = _fixed_choice(ctx, requested, field)
    if fixed is not None:
        return _noted(ctx, request, [fixed] * len(texts))
    if ctx.router is None:
        raise HTTPException(503, "routing is off on this server; name a domain")
    routed = await ctx.router.run(request, lambda router, job: router.route_many(texts))
    if ctx.metrics is not None:
        for domain, _ in routed:
            ctx.metrics.routed.labels(domain).inc()
    return _noted(ctx, request, [Choice(domain, domain_model_id(domain), domain, scores) for domain, scores in routed])


def _noted(ctx: ServingContext, request: Request, choices: list[Choice]) -> list[Choice]:
    """The choices, with their one label left on the request for /metrics' token counts."""
    request.state.domain = domain_label(choices)
    return choices
