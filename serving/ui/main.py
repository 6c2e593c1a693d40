"""`domain-llm ui`: the experiments dashboard alone, without loading a model (reads the repository it runs in).

    domain-llm ui                          # http://127.0.0.1:8000/ui, the DVC repository of the working directory
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
    from starlette.middleware.trustedhost import TrustedHostMiddleware

    from serving.security import BodyLimitMiddleware
    from serving.ui.routes import build_ui_router

    app = FastAPI(title="domain-llm dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    app.include_router(build_ui_router(settings, repo, served=False))
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.limits.max_body_bytes)  # as on the API server
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.trusted_hosts())
    return app


def enclosing_dvc_repo(folder: Path) -> Path | None:
    """The DVC repository `folder` is in (the dashboard of the repo you run `domain-llm ui` in), if any."""
    return next((p for p in (folder, *folder.parents) if (p / ".dvc").is_dir()), None)


def main(cfg: DictConfig, root: Path | None = None) -> None:
    import uvicorn

    settings = ServeSettings.from_config(cfg, root=root)
    settings.check_exposure()
    repo = enclosing_dvc_repo(Path.cwd()) or settings.root
    app = create_dashboard_app(settings, repo)
    log.info("dashboard of %s at http://%s:%d/ui", repo, settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, access_log=False, log_config=None)
