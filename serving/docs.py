"""/docs (Swagger UI) and /redoc served with their assets from this server, not from a CDN, so the interactive
API documentation renders on an air-gapped host. The assets come from the `fastapi-offline` package (installed
with domain-llm); only its static files are used, under /docs-assets."""

from __future__ import annotations

from importlib.resources import files

from fastapi import FastAPI
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles

ASSETS = "/docs-assets"
# ReDoc's sidebar footer always loads its vendor's logo from a CDN (no option turns it off): on an air-gapped
# host that is a failed request on every page view. The script is served with that one URL pointing here.
REDOC_LOGO = b"https://cdn.redoc.ly/redoc/logo-mini.svg"


def add_offline_docs(app: FastAPI) -> None:
    """Call on an app created with docs_url=None, redoc_url=None."""
    static = files("fastapi_offline") / "static"
    redoc_js = (static / "redoc.standalone.js").read_bytes().replace(REDOC_LOGO, f"{ASSETS}/favicon.png".encode())

    @app.get(f"{ASSETS}/redoc.standalone.js", include_in_schema=False)
    async def redoc_script() -> Response:
        return Response(redoc_js, media_type="text/javascript", headers={"Cache-Control": "max-age=86400"})

    app.mount(ASSETS, StaticFiles(directory=str(static)), name="docs-assets")

    @app.get("/docs", include_in_schema=False)
    async def swagger_ui() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url=app.openapi_url, title=f"{app.title} - docs",
                                   swagger_js_url=f"{ASSETS}/swagger-ui-bundle.js",
                                   swagger_css_url=f"{ASSETS}/swagger-ui.css",
                                   swagger_favicon_url=f"{ASSETS}/favicon.png")

    @app.get("/redoc", include_in_schema=False)
    async def redoc() -> HTMLResponse:
        return get_redoc_html(openapi_url=app.openapi_url, title=f"{app.title} - ReDoc",
                              redoc_js_url=f"{ASSETS}/redoc.standalone.js",
                              redoc_favicon_url=f"{ASSETS}/favicon.png", with_google_fonts=False)
