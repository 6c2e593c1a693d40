"""Real servers for the serving tests: `domain-llm serve` subprocesses, or uvicorn in a thread of this process
(cheaper when a test needs an unusual configuration). Both listen on 127.0.0.1 on a free port."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import uvicorn

from stages.config import compose

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until_healthy(url: str, process: subprocess.Popen | None = None, timeout_s: float = 90.0,
                       status: int = 200) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}: {log_tail(process)}")
        try:
            if httpx.get(f"{url}/api/v1/health", timeout=2).status_code == status:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise TimeoutError(f"{url} not healthy after {timeout_s} s")


def log_tail(process: subprocess.Popen, n_chars: int = 3000) -> str:
    process.log_file.flush()
    return Path(process.log_file.name).read_text(errors="replace")[-n_chars:]


@dataclass
class ServerProcess:
    url: str
    process: subprocess.Popen

    def stop(self) -> int:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        return self.process.returncode


# A clean checkout has no pipeline outputs (models/index, models/adapters, models/reranker): a test server names
# what it serves, since a configured component that is missing now keeps /health at 503 (serving/components.py).
# /v1/embeddings is off too unless a test turns it on: its worker would load MiniLM in every test server. Feedback
# is off unless a test gives it a folder of its own: no test server appends to the checkout's data/feedback.
ABSENT_IN_TESTS = ("serve.index=null", "serve.adapters={}", "serve.reranker=null", "serve.embeddings=false",
                   "serve.feedback_dir=null")


def with_test_defaults(overrides: tuple[str, ...] | list[str]) -> list[str]:
    """ABSENT_IN_TESTS for every key the test does not set itself, then the test's overrides."""
    given = {o.split("=", 1)[0].lstrip("+") for o in overrides}
    return [d for d in ABSENT_IN_TESTS if d.split("=", 1)[0] not in given] + list(overrides)


def serve_command(*overrides: str) -> list[str]:
    return [sys.executable, "-m", "stages.cli", "serve", "threads=1", *with_test_defaults(overrides)]


def start_server_process(*overrides: str, env: dict | None = None, wait: bool = True) -> ServerProcess:
    port = free_port()
    # Logs go to a file: a pipe nobody reads would block the server once its buffer fills.
    log_file = tempfile.NamedTemporaryFile("w+", prefix="serve-", suffix=".log", delete=False)
    process = subprocess.Popen(serve_command(f"serve.port={port}", *overrides), cwd=REPO_ROOT,
                               env={**os.environ, **(env or {})}, stdout=log_file, stderr=subprocess.STDOUT,
                               text=True)
    process.log_file = log_file
    server = ServerProcess(f"http://127.0.0.1:{port}", process)
    if wait:
        try:
            wait_until_healthy(server.url, process)
        except BaseException:
            server.stop()
            raise
    return server


@dataclass
class ThreadServer:
    url: str
    server: uvicorn.Server
    thread: threading.Thread
    app: object

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def start_thread_server(*overrides: str, engine=None, healthy: bool = True) -> ThreadServer:
    """uvicorn in a thread of the test process, with create_app(compose(overrides), engine)."""
    from serving.app import create_app

    port = free_port()
    app = create_app(compose(["threads=1", f"serve.port={port}", *with_test_defaults(overrides)]), engine=engine)
    return serve_in_thread(app, port, healthy=healthy)


def serve_in_thread(app, port: int | None = None, healthy: bool = True) -> ThreadServer:
    """uvicorn in a thread serving `app` (a test may adjust the app between create_app and this)."""
    port = port or free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_config=None, access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    running = ThreadServer(url, server, thread, app)
    if healthy:
        wait_until_healthy(url)
    return running


@pytest.fixture(scope="session")
def published_gguf(smollm2_gguf, tmp_path_factory) -> Path:
    """The SmolLM2 GGUF as the quantize stage publishes a model: a manifest beside it says it was trained for
    healthcare with the domain's system prompt (which the server then uses by default)."""
    from stages.manifest import write_manifest

    folder = tmp_path_factory.mktemp("published_gguf")
    path = folder / smollm2_gguf.name
    os.symlink(smollm2_gguf, path)
    domain = compose([]).domain
    write_manifest(folder, {}, {}, {"domain": str(domain.name)}, {},
                   served={"domain": str(domain.name), "system_prompt": str(domain.system_prompt)})
    return path


@pytest.fixture(scope="session")
def gguf_overrides(published_gguf) -> list[str]:
    return [f"serve.model={published_gguf}"]


@pytest.fixture(scope="session")
def gguf_engine_shared(published_gguf):
    """One loaded GGUF engine for the thread servers (each app owns it only while that server runs)."""
    from stages.inference import load_engine

    return load_engine("gguf", published_gguf, threads=1, n_ctx=2048, parallel=8)  # serve.parallel's default


@pytest.fixture(scope="session")
def server(gguf_overrides) -> Iterator[ServerProcess]:
    """`domain-llm serve` on the SmolLM2 GGUF with the default settings (reranker = the bundled bi-encoder)."""
    running = start_server_process(*gguf_overrides, "serve.reranker=null")
    yield running
    running.stop()


def wait_for(predicate, timeout_s: float = 30.0, interval_s: float = 0.1):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval_s)
    raise TimeoutError("condition not met")
