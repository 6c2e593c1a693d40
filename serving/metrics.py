"""`GET /metrics` in Prometheus text format (prometheus_client): what an operator wires up first.

    curl -H "Authorization: Bearer $KEY" http://127.0.0.1:8000/metrics

Counted as requests pass (thread-safe; the request log middleware, the generation worker, the router, retrieval):
- `domain_llm_requests_total{route, method, status, domain}` and `domain_llm_request_duration_seconds{route}`:
  every request by its route template (never the raw path) and the domain that answered (`base`, a served
  domain, `mixed` for a batch over several, `none` where no model answered);
- `domain_llm_prompt_tokens_total{domain}`, `domain_llm_completion_tokens_total{domain}`: of every generation;
- `domain_llm_time_to_first_token_seconds{domain}` (streamed answers: from the request's arrival to its first
  piece) and `domain_llm_time_per_output_token_seconds{domain}` (streamed answers: after the first piece);
- `domain_llm_routed_total{domain}`: `auto` choices; `domain_llm_retrieval_seconds`: /ask retrieval (and its
  reranking); `domain_llm_citations_total{result}`: citations checked in grounded answers, valid or invalid.
Read at each scrape: `domain_llm_queue_depth{worker}` (jobs waiting per worker) and, from the GGUF engine,
`domain_llm_active_sequences`, `domain_llm_prefix_tokens_reused_total`, `domain_llm_prompt_tokens_evaluated_total`
and `domain_llm_adapter_switches_total`. Labels are bounded: routes are the app's, domains those served.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from fastapi import APIRouter, Depends, Response
from fastapi.responses import PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

if TYPE_CHECKING:
    from serving.service import ServingContext

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)
TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28)
NO_DOMAIN, MIXED, BASE = "none", "mixed", "base"
METHODS = {"GET", "POST", "DELETE", "HEAD", "OPTIONS", "PUT", "PATCH"}  # any other a client invents: "other"


class ServerMetrics:
    def __init__(self, ctx: ServingContext):
        self.ctx = ctx
        self.registry = CollectorRegistry()  # per app: tests run several servers in one process
        r = self.registry
        self.requests = Counter("domain_llm_requests", "HTTP requests", ["route", "method", "status", "domain"],
                                registry=r)
        self.duration = Histogram("domain_llm_request_duration_seconds", "HTTP request latency", ["route"],
                                  buckets=LATENCY_BUCKETS, registry=r)
        self.prompt_tokens = Counter("domain_llm_prompt_tokens", "prompt tokens of generations", ["domain"], registry=r)
        self.completion_tokens = Counter("domain_llm_completion_tokens", "generated tokens", ["domain"], registry=r)
        self.ttft = Histogram("domain_llm_time_to_first_token_seconds", "arrival to the first piece streamed, or "
                              "to the first token sampled (non-streamed, GGUF engine)", ["domain"],
                              buckets=LATENCY_BUCKETS, registry=r)
        self.tpot = Histogram("domain_llm_time_per_output_token_seconds", "per token after the first",
                              ["domain"], buckets=TOKEN_BUCKETS, registry=r)
        self.routed = Counter("domain_llm_routed", "`auto` routing choices", ["domain"], registry=r)
        self.retrieval = Histogram("domain_llm_retrieval_seconds", "retrieval (+ reranking) of /ask and chat "
                                   "`retrieval`", buckets=LATENCY_BUCKETS, registry=r)
        self.citations = Counter("domain_llm_citations", "citations checked in grounded answers", ["result"],
                                 registry=r)
        r.register(_ScrapeTime(ctx))

    # -- what the app calls ----------------------------------------------------------------------------------
    def request_done(self, route: str, method: str, status: int, domain: str | None, seconds: float) -> None:
        self.requests.labels(route, method if method in METHODS else "other", str(status), domain or NO_DOMAIN).inc()
        self.duration.labels(route).observe(seconds)

    def generations(self, domain: str, generations: Iterable[Any], first_piece: float | None = None,
                    arrived: float | None = None, ended: float | None = None) -> None:
        """Tokens of finished generations, and TTFT and per-token time: a streamed one's from its first piece
        (first_piece), a non-streamed one's from the engine's own times (Generation.first_token_at, ended_at)."""
        for g in generations:
            self.prompt_tokens.labels(domain).inc(g.prompt_tokens)
            self.completion_tokens.labels(domain).inc(g.completion_tokens)
            first = first_piece if first_piece is not None else getattr(g, "first_token_at", None)
            end = ended if first_piece is not None else getattr(g, "ended_at", None)
            if first is not None and arrived is not None:
                self.ttft.labels(domain).observe(max(0.0, first - arrived))
                if g.completion_tokens > 1 and end is not None:
                    self.tpot.labels(domain).observe((end - first) / (g.completion_tokens - 1))

    def render(self) -> bytes:
        return generate_latest(self.registry)


def add_metrics(ctx: ServingContext) -> ServerMetrics:
    """ctx.metrics, told of every finished generation by the generation runner (domain: what `choose` left on
    the request)."""
    metrics = ctx.metrics = ServerMetrics(ctx)

    def generations(request, found: list, first_piece: float | None, ended: float | None) -> None:
        state = request.state
        metrics.generations(getattr(state, "domain", BASE), found, first_piece, getattr(state, "arrived", None),
                            ended)
    ctx.generation.on_generations = generations
    return metrics


def build_metrics_router(ctx: ServingContext) -> APIRouter:
    from serving.security import api_key_check
    from serving.service import error_responses

    unauthorized = {k: v for k, v in error_responses(ctx.settings).items() if k == 401}  # when a key is set
    router = APIRouter(tags=["Operations"], dependencies=[Depends(api_key_check(ctx.settings.api_key, ctx.sessions))],
                       responses=unauthorized)

    @router.get("/metrics", summary="Prometheus metrics (text format)", response_class=PlainTextResponse)
    async def metrics() -> Response:
        return Response(ctx.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    return router


def domain_label(choices: list) -> str:
    """One label for the choices a request made: the domain, `base`, or `mixed`."""
    names = {c.domain or BASE for c in choices}
    return names.pop() if len(names) == 1 else MIXED


class _ScrapeTime:
    """Values read when Prometheus scrapes: queue depths and the GGUF engine's counters."""

    def __init__(self, ctx: ServingContext):
        self.ctx = ctx

    def collect(self):
        queue = GaugeMetricFamily("domain_llm_queue_depth", "jobs waiting per worker", labels=["worker"])
        runners = {"model": self.ctx.generation, "reranker": self.ctx.rerank, "router": self.ctx.router,
                   "index": self.ctx.index, "embeddings": self.ctx.embeddings}
        for name, runner in runners.items():
            if runner is not None:
                queue.add_metric([name], runner.worker.stats()["queued"])
        yield queue
        engine = self.ctx.generation.worker.engine
        scheduler = getattr(engine, "scheduler", None)
        if scheduler is None:
            return
        stats = scheduler.stats
        active = sum(1 for lane in getattr(scheduler, "lanes", [scheduler]) for s in getattr(lane, "slots", [])
                     if s.request is not None)
        yield GaugeMetricFamily("domain_llm_active_sequences", "sequences decoding now", value=active)
        for name, key, text in (("domain_llm_prefix_tokens_reused", "prefix_tokens_reused",
                                 "prompt tokens served from the prompt cache"),
                                ("domain_llm_prompt_tokens_evaluated", "prompt_tokens", "prompt tokens submitted"),
                                ("domain_llm_adapter_switches", "adapter_switches", "LoRA adapter switches")):
            yield CounterMetricFamily(name, text, value=stats.get(key, 0))
