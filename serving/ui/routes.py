"""The web UI at /ui: the playground (chat, grounded ask, rerank) over the served API, and the experiments
dashboard (grouped per domain).

    app.include_router(build_ui_router(settings, repo=Path("."), served=True))    # in create_app
    domain-llm ui                                                                 # the dashboard alone

Pages are rendered on the server (Jinja2, autoescaped) with our own small script and stylesheet; charts are
SVG drawn on the server (charts.py) and inlined. Nothing is loaded from outside the server, and the
Content-Security-Policy says so.
The playground calls the same /v1 and /api/v1 endpoints as any client: same limits, same API key (its 👍/👎 under
each chat answer post to /api/v1/feedback, shown only when serve.feedback_dir is set).
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, Undefined, select_autoescape
from markdown_it import MarkdownIt
from pydantic import BaseModel, Field

from serving.security import UI_COOKIE, BearerCredentials, UISessions, authorised, token_matches
from serving.settings import ServeSettings
from serving.ui import experiments as exp
from serving.ui.charts import line_chart, loss_lines

HERE = Path(__file__).parent
STATIC = {"ui.js": "text/javascript", "ui.css": "text/css"}
# Only this server's own files and API; no inline script or style; not framable.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; connect-src 'self'; "
       "form-action 'self'; base-uri 'none'; frame-ancestors 'none'")
SECURITY_HEADERS = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff",
                    "Referrer-Policy": "no-referrer", "Cache-Control": "no-store"}
MAX_COMPARED = 8
ROWS_TTL_S = 5.0

templates = Environment(loader=FileSystemLoader(HERE / "templates"), autoescape=select_autoescape(default=True),
                        trim_blocks=True, lstrip_blocks=True)
# Markdown of model cards and the data report: raw HTML in it is escaped, never rendered.
markdown = MarkdownIt("commonmark", {"html": False}).enable("table")
templates.filters["markdown"] = lambda text: markdown.render(text)
# A value a file does not have (None, or a key missing from it) shows as a dash, not as an empty cell.
templates.filters["num"] = lambda v: (f"{v:.4g}" if isinstance(v, float) else
                                      ("—" if v is None or isinstance(v, Undefined) else str(v)))
templates.filters["signed"] = lambda v: "—" if v is None else f"{v:+.4g}"


class Login(BaseModel):
    api_key: str = Field(min_length=1, max_length=4096)


def page(name: str, status: int = 200, **context) -> HTMLResponse:
    return HTMLResponse(templates.get_template(name).render(**context), status_code=status,
                        headers=SECURITY_HEADERS)


def build_ui_router(settings: ServeSettings, repo: Path, served: bool,
                    sessions: UISessions | None = None) -> APIRouter:
    """`served`: a model is behind this app (the playground works); False for `domain-llm ui`. `sessions`: the
    sign-in cookies the API accepts too (one per app)."""
    router = APIRouter(prefix="/ui", include_in_schema=False)
    api_key = settings.api_key
    sessions = sessions or UISessions(api_key, settings.ui_session_hours)
    nav = {"served": served, "login": api_key is not None}

    async def signed_in(request: Request, credentials: BearerCredentials) -> None:
        if api_key is not None and not authorised(request, credentials, api_key, sessions):
            raise HTTPException(303, "sign in", headers={"Location": "/ui/login"})

    guarded = [Depends(signed_in)]
    # One page view is the page plus its loss-curve image: both need `dvc exp show` (~1.5 s here). Reuse a
    # listing for a few seconds instead of running dvc twice; a new experiment shows on the next reload.
    listing: dict = {"at": -1e9, "rows": None}

    async def experiment_rows() -> list:
        if listing["rows"] is None or time.monotonic() - listing["at"] > ROWS_TTL_S:
            listing["rows"] = await asyncio.to_thread(exp.list_experiments, repo)
            listing["at"] = time.monotonic()
        return listing["rows"]

    @router.get("", dependencies=guarded)
    async def home() -> RedirectResponse:
        return RedirectResponse("/ui/playground" if served else "/ui/experiments", status_code=303)

    @router.get("/login")
    async def login_page() -> HTMLResponse:
        return page("login.html", nav=nav, title="Sign in")

    @router.post("/login", status_code=204)
    async def login(body: Login, request: Request) -> Response:
        if api_key is None:
            return Response(status_code=204)
        if not token_matches(_bearer(body.api_key), api_key):
            raise HTTPException(401, "wrong API key (serve.api_key / DOMAIN_LLM_API_KEY)")
        response = Response(status_code=204)
        # Secure under https (never sent back over plain http); expires with the session it carries.
        response.set_cookie(UI_COOKIE, sessions.issue(), max_age=sessions.lifetime_s, httponly=True,
                            samesite="strict", path="/", secure=request.url.scheme == "https")
        return response

    @router.post("/logout", status_code=204)
    async def logout(request: Request) -> Response:
        """Revoke this browser's session on the server (a copied cookie stops working too) and drop it."""
        sessions.revoke(request.cookies.get(UI_COOKIE, ""))
        response = Response(status_code=204)
        response.delete_cookie(UI_COOKIE, path="/", httponly=True, samesite="strict",
                               secure=request.url.scheme == "https")
        return response

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if name not in STATIC:
            raise HTTPException(404, f"no such file: {name}")
        return Response((HERE / "static" / name).read_bytes(), media_type=STATIC[name],
                        headers={"X-Content-Type-Options": "nosniff", "Cache-Control": "no-cache"})

    if served:  # `domain-llm ui` has no model behind it: no playground page at all
        @router.get("/playground", dependencies=guarded)
        async def playground() -> HTMLResponse:
            # /api/v1/ask exists only when serve.index is set (serving/app.py): the Ask tab says so up front
            return page("playground.html", nav=nav, title="Playground", limits=settings.limits,
                        rerank=settings.rerank, ask=settings.index is not None, ask_top_k=settings.ask_top_k,
                        feedback=settings.feedback_dir is not None)

    @router.get("/experiments", dependencies=guarded)
    async def experiments(compare: Annotated[list[str], Query()] = []) -> HTMLResponse:  # noqa: B006
        try:
            rows = await experiment_rows()
        except Exception as e:  # no DVC repo, dvc failing: say so on the page rather than a bare 500
            return page("experiments.html", status=503, nav=nav, title="Experiments", error=str(e))
        by_rev = {r.rev: r for r in rows}
        selected = [rev for rev in dict.fromkeys(compare) if rev in by_rev][:MAX_COMPARED]
        comparison = exp.compare_rows(by_rev[selected[0]], by_rev[selected[1]]) if len(selected) == 2 else None
        curve_revs = [(r, by_rev[r].name) for r in (selected or ["workspace"]) if r in by_rev]
        sections = await asyncio.to_thread(domain_sections, repo, rows, curve_revs)
        shared = {"quantization": exp.quantization_table(repo), "reranker": exp.reranker_table(repo),
                  "routing": exp.routing_table(repo), "index": exp.scalar_facts(repo, "metrics/index.json")}
        return page("experiments.html", nav=nav, title="Experiments", rows=rows, params=exp.changed_params(rows),
                    comparison=comparison, selected=selected, error=None, sections=sections, shared=shared,
                    docs=exp.documents(repo))

    @router.get("/charts/loss.svg", dependencies=guarded)
    async def loss_chart(rev: Annotated[list[str], Query()] = ["workspace"]) -> Response:  # noqa: B006
        """The page's curves as one standalone SVG file (every series of the given experiments)."""
        rows = {r.rev: r for r in await experiment_rows()}
        unknown = [r for r in rev if r not in rows]
        if unknown:
            raise HTTPException(404, f"no experiment or commit {unknown[0]!r} in `dvc exp show`")
        wanted = [(r, rows[r].name) for r in dict.fromkeys(rev)][:MAX_COMPARED]
        curves = await asyncio.to_thread(exp.loss_curves, repo, wanted)
        svg = line_chart(loss_lines(curves, prefix=None), standalone=True)
        return Response(svg, media_type="image/svg+xml",
                        headers={"Content-Security-Policy": "default-src 'none'", "X-Content-Type-Options": "nosniff"})

    return router


def domain_sections(repo: Path, rows: list[exp.ExperimentRow], curve_revs: list[tuple[str, str]]) -> list[dict]:
    """One section per domain (its headline metrics by experiment, its loss curves, its quantized models), after
    one for metrics/headline.json and metrics/train_live when the repository has that single-model layout."""
    groups = {g.domain: g for g in exp.metric_groups(rows)}
    curves = exp.loss_curves(repo, curve_revs)
    single = loss_lines(curves)
    sections = []
    for domain in ([None] if None in groups or single else []) + exp.domains(repo, rows):
        lines = loss_lines(curves, f"{domain} ") if domain else single
        title = f"{domain}: loss per step" if domain else "loss per step"
        sections.append({"domain": domain, "id": domain or "model", "group": groups.get(domain),
                         "chart": line_chart(lines, title=title),
                         "quantization": exp.quantization_table(repo, domain) if domain else []})
    return sections


def _bearer(key: str):
    from fastapi.security import HTTPAuthorizationCredentials

    return HTTPAuthorizationCredentials(scheme="Bearer", credentials=key)
