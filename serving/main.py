"""`domain-llm serve`: load the model (fail fast), then run the API under uvicorn.

    domain-llm serve                                                     # models/gguf/model-q4_k_m.gguf
    domain-llm serve serve.model=models/gguf/model-q8_0.gguf serve.port=8080
    domain-llm serve serve.engine=hf serve.model=models/merged
    domain-llm serve serve.engine=openai_upstream serve.upstream_url=http://127.0.0.1:8080
    DOMAIN_LLM_API_KEY=secret domain-llm serve serve.admin_token=admin-secret

SIGTERM (or POST /api/v1/shutdown with the admin token) stops accepting connections, lets in-flight requests
finish (up to serve.request_timeout_s), then exits 0.
"""

from __future__ import annotations

import logging
from pathlib import Path

from omegaconf import DictConfig

from serving.settings import ServeSettings

log = logging.getLogger("serving")


def main(cfg: DictConfig, root: Path | None = None) -> None:
    """`root`: the project folder relative serve.* paths mean (the CLI passes the composed config's folder)."""
    import uvicorn

    from serving.app import create_app, load_serving_engine

    settings = ServeSettings.from_config(cfg, root=root)
    settings.check_exposure()  # before loading anything: a refusal costs no model load
    log.info("project root %s (relative serve.* paths resolve here)", settings.root)
    engine = load_serving_engine(settings)  # a StageError here is the one-line start-up failure
    info = engine.info()
    app = create_app(settings, engine=engine)
    config = uvicorn.Config(app, host=settings.host, port=settings.port, access_log=False, log_config=None,
                            timeout_graceful_shutdown=int(settings.request_timeout_s) + 1)
    server = uvicorn.Server(config)
    app.state.request_shutdown = lambda: setattr(server, "should_exit", True)
    log.info("serving %s (%s, %s) at http://%s:%d  - docs at /docs, OpenAI API at /v1", app.state.ctx.model_id,
             info.get("type"), info.get("quantization"), settings.host, settings.port)
    server.run()
    if not server.started:  # e.g. the port was taken; uvicorn has logged why
        raise SystemExit(1)
