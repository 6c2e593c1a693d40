"""What the server serves, found once at start-up and reported the same way in the log and in /api/v1/health.

    report = inspect_components(settings, domains)   # logs one line per component: absolute path, what is there
    status, body = health_status(ctx)                # 200 only when every required component is ready

A component is the model, the domain adapters, the router that `auto` needs, the reranker and the document
index. Each is disabled (not configured), missing (configured, but nothing usable at its path: a warning at
start-up), loading, ready or failed. `serve.require` lists the components /health waits for (default: every
enabled one), so a deployment that means to run without an index says so instead of finding out from 503s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from serving.settings import ADAPTER_ENGINES, COMPONENTS, ServeSettings
from serving.worker import EngineWorker
from stages.inference.adapters import AdapterFacts

if TYPE_CHECKING:
    from serving.service import ServingContext

log = logging.getLogger("serving")

INDEX_CHUNKS = "chunks.jsonl"


@dataclass
class Component:
    """One component as start-up found it: `missing` says why a configured one cannot be served."""

    name: str
    enabled: bool
    path: Path | None = None
    found: str = ""
    missing: str | None = None
    note: str | None = None  # served, but not as configured (e.g. the bi-encoder instead of the reranker)


def inspect_components(settings: ServeSettings, domains: dict[str, AdapterFacts]) -> dict[str, Component]:
    """Every component's configured path and what is there, each logged in one line (a warning when a
    configured one is missing), so a server started from an unexpected place says what it serves."""
    from stages.inference.reranker import (
        RERANKER_INFO,
        has_cross_encoder,
        reranker_benchmark,
        reranker_shortfall,
    )

    model = Path(settings.model) if settings.engine != "openai_upstream" else None
    components = {"model": Component("model", True, model,
                                     found=f"upstream {settings.upstream_url}" if model is None else "")}
    if model is not None:
        components["model"].found = (f"{model.stat().st_size / 1e6:.1f} MB" if model.is_file()
                                     else "a model folder" if model.is_dir() else "nothing (loads fail: 503)")

    # Configured (serve.adapters, or an adapter_dir to look in) or brought by a caller's engine.
    adapters_on = bool(domains) or (settings.engine in ADAPTER_ENGINES and bool(
        settings.adapters or (settings.adapters is None and settings.adapter_dir)))
    adapter_path = Path(settings.adapter_dir) if settings.adapters is None and settings.adapter_dir else None
    adapters = Component("adapters", adapters_on, adapter_path)
    if domains:
        adapters.found = ", ".join(f"{d} ({facts.path})" for d, facts in domains.items())
    elif adapters.enabled:
        adapters.missing = (f"no adapter published for {Path(settings.model).name} in {adapter_path}; run "
                            "`dvc repro` (adapter@<domain>), or serve.adapters={} to serve the base model alone")
    components["adapters"] = adapters
    components["router"] = Component("router", bool(domains), found=f"{len(domains)} domains" if domains else "")

    reranker = Component("reranker", settings.rerank, Path(settings.reranker) if settings.reranker else None)
    if reranker.enabled:
        if reranker.path is None:
            reranker.found = "the bundled MiniLM bi-encoder (serve.reranker=null)"
        elif has_cross_encoder(reranker.path):
            reranker.found = "a cross-encoder"
            shortfall = None if settings.rerank_below_biencoder else reranker_shortfall(reranker.path)
            if shortfall:
                reranker.note = shortfall + " (serve.rerank_below_biencoder=true serves it anyway)"
            elif reranker_benchmark(reranker.path) is None:
                reranker.found += f" (no benchmark in its {RERANKER_INFO}: not checked against its bi-encoder)"
        else:
            reranker.missing = (f"no cross-encoder at {reranker.path}; serving the bundled bi-encoder (run `dvc "
                                "repro train_reranker`, or serve.reranker=null to choose the bi-encoder)")
    components["reranker"] = reranker

    index = Component("index", bool(settings.index), Path(settings.index) if settings.index else None)
    if index.enabled:
        chunks = index.path / INDEX_CHUNKS
        if chunks.is_file():
            with chunks.open(encoding="utf-8") as f:
                index.found = f"{sum(1 for line in f if line.strip())} passages"
        else:
            index.missing = (f"no index at {index.path} ({INDEX_CHUNKS} missing): /api/v1/ask and chat `retrieval` "
                             "answer 503; run `dvc repro index`, or serve.index=null")
    components["index"] = index

    for c in components.values():  # "adapters: /abs/models/adapters: healthcare (...), legal (...)"
        where = f"{c.name}: {c.path}:" if c.path is not None and c.enabled else f"{c.name}:"
        if not c.enabled:
            log.info("%s disabled", where)
        elif c.missing:
            log.warning("%s MISSING - %s", where, c.missing)
        elif c.note:
            log.warning("%s %s - %s", where, c.found, c.note)
        else:
            log.info("%s %s", where, c.found or "configured")
    return components


def component_status(component: Component, worker: EngineWorker | None) -> dict:
    """One component's readiness: its state, whether it serves requests as configured, and why not."""
    if not component.enabled:
        return {"state": "disabled", "ready": False}
    if component.missing:
        # a missing reranker still answers with the bi-encoder; say so beside the missing state
        serving = {"serving": "bi-encoder fallback"} if component.name == "reranker" else {}
        return {"state": "missing", "ready": False, "detail": component.missing, **serving}
    state = worker.state if worker is not None else "ready"  # read once: the loader thread may change it
    status = {"state": state, "ready": state == "ready"}
    if state != "ready":
        status["detail"] = worker.describe_not_ready(state)
    elif component.note:
        status["detail"] = component.note
    return status


def health_status(ctx: ServingContext) -> tuple[int, dict]:
    """200 "ok" only when every required component is ready (serve.require; default every enabled one); else
    503 naming the first that is not (model first), so a load balancer never routes to a server whose /ask or
    /rerank would answer 503 or with something other than what was configured."""
    workers = {"model": ctx.generation.worker, "router": ctx.router.worker if ctx.router else None,
               "reranker": ctx.rerank.worker if ctx.rerank else None,
               "index": ctx.index.worker if ctx.index else None, "adapters": None}
    statuses = {name: component_status(ctx.components[name], workers[name]) for name in COMPONENTS}
    required = ctx.settings.require if ctx.settings.require is not None else [
        n for n, s in statuses.items() if s["state"] != "disabled"]
    for name, status in statuses.items():
        status["required"] = name in required
    blocking = next(((n, s) for n, s in statuses.items() if n in required and not s["ready"]), None)
    body = {"status": blocking[1]["state"] if blocking else "ok", "model_loaded": statuses["model"]["ready"],
            "components": statuses}
    if blocking:
        body["detail"] = f"{blocking[0]}: {blocking[1].get('detail') or blocking[1]['state']}"
    return (503 if blocking else 200), body
