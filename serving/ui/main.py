"""`domain-llm ui`: the experiments dashboard alone, without loading a model (reads the repository it runs in).

    domain-llm ui                          # http://127.0.0.1:8000/ui
    domain-llm ui serve.port=8090          # host, port and api_key come from the serve config group
"""

from __future__ import annotations

import logging
from pathlib import Path

from fastapi import FastAPI
from omegaconf import DictConfig

from serving.settings import ServeSettings

log = logging.getLogger("serving")


def create_dashboard_app(settings: ServeSettings, repo: Path) -> FastAPI:
    from serving.security import BodyLimitMiddleware
    from serving.ui.routes import build_ui_router

    app = FastAPI(title="domain-llm dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(build_ui_router(settings, repo, served=False))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)  # as on the API server
    return app


def main(cfg: DictConfig) -> None:
    import uvicorn

    settings = ServeSettings.from_config(cfg)
    app = create_dashboard_app(settings, Path.cwd())
    log.info("dashboard of %s at http://%s:%d/ui", Path.cwd(), settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None)
