"""The servers a benchmark starts on 127.0.0.1: ours (`domain-llm serve`, or as of a git ref), and its peers
`python -m llama_cpp.server` and llama.cpp's `llama-server`, each a subprocess ready once it answers 200.

    server = our_server(gguf, threads=2, n_ctx=2048, parallel=8, flash_attn="on")
    start(server, log_dir)        # exits with the server's log tail if it dies or is not ready in time
    ... server.url ... server.loaded   # what the server said it serves (its /v1/models, our /health components)
    stop(server)

Servers run in a temporary working directory, so every path they get is absolute: a relative one would resolve
against that directory (or, for ours, the project root) instead of what the bench meant.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from bench.llama_server_peer import llama_server_argv
from bench.run_info import free_port

ROOT = Path(__file__).resolve().parent.parent


OURS = "domain-llm serve"


@dataclass
class Server:
    name: str
    argv: list[str]
    ready_path: str  # GET answers 200 once the model is loaded
    port: int
    process: subprocess.Popen | None = None
    loaded: dict | None = None  # what the running server said it serves, recorded by start()
    request_fields: dict = field(default_factory=dict)  # added to every request body (which adapter it wants)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


def our_server(gguf: Path, threads: int, n_ctx: int, parallel: int, flash_attn: str, adapter: str | None = None) -> Server:
    port = free_port()
    # rerank=false: the reranker (torch) is not part of this comparison; queue 64 so no client is refused;
    # adapters={}: the peers serve the GGUF as it is, so ours does too (bench/domain_serving.py measures adapters).
    argv = [str(Path(sys.executable).parent / "domain-llm"), "serve", f"serve.model={gguf.resolve()}",
            f"serve.port={port}", "serve.host=127.0.0.1", f"threads={threads}", f"serve.n_ctx={n_ctx}", f"serve.parallel={parallel}",
            f"serve.flash_attn={flash_attn}", *(() if adapter else ("serve.adapters={}",)),
            "serve.rerank=false", "serve.queue_size=64"]
    # adapter: every adapter published for the GGUF is loaded (the default), requests ask for this one's model id
    return Server(OURS, argv, "/api/v1/health", port, request_fields={"model": f"domain-llm-{adapter}"} if adapter else {})


def baseline_server(ref: str, gguf: Path, threads: int, n_ctx: int, tmp: Path) -> Server:
    """Our server as of git `ref` (e.g. the engine before this change), from a temporary worktree. The
    editable install's import hook is dropped so that `stages`/`serving` come from the worktree."""
    worktree = tmp / "baseline"
    subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "--quiet", str(worktree), ref], check=True)
    launcher = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f)]; "
                f"sys.path.insert(0, {str(worktree)!r}); sys.argv[0] = 'domain-llm'; "
                "from stages.cli import main; main()")
    port = free_port()
    argv = [sys.executable, "-c", launcher, "serve", f"serve.model={gguf.resolve()}", f"serve.port={port}",
            "serve.host=127.0.0.1", f"threads={threads}", f"serve.n_ctx={n_ctx}", "serve.rerank=false",
            "serve.queue_size=64"]
    return Server(f"domain-llm serve @{ref}", argv, "/api/v1/health", port)


def python_peer(gguf: Path, threads: int, n_ctx: int, flash_attn: str) -> Server:
    # interrupt_requests False: by default a new streamed request cuts off the one being generated; this way
    # it waits its turn, as without streaming.
    port = free_port()
    argv = [sys.executable, "-m", "llama_cpp.server", "--model", str(gguf.resolve()), "--host", "127.0.0.1",
            "--port", str(port), "--n_threads", str(threads), "--n_threads_batch", str(threads),
            "--n_ctx", str(n_ctx), "--verbose", "False", "--interrupt_requests", "False",
            "--flash_attn", str(flash_attn == "on")]
    return Server("llama_cpp.server", argv, "/v1/models", port)


def cpp_peer(binary: Path, gguf: Path, threads: int, n_ctx: int, parallel: int, flash_attn: str,
             adapters: list[Path] = (), adapter_index: int | None = None) -> Server:
    """adapters: loaded with --lora, none applied by default; requests ask for adapters[adapter_index] at scale 1
    through the per-request `lora` field."""
    port = free_port()
    argv = llama_server_argv(binary, gguf.resolve(), port, threads, n_ctx, parallel, flash_attn)
    if adapters:
        argv += [arg for path in adapters for arg in ("--lora", str(path))] + ["--lora-init-without-apply"]
    fields = {} if adapter_index is None else {
        "lora": [{"id": i, "scale": 1.0 if i == adapter_index else 0.0} for i in range(len(adapters))]}
    return Server("llama-server", argv, "/health", port, request_fields=fields)


def start(server: Server, log_dir: Path, timeout_s: float = 180) -> None:
    log = (log_dir / f"{server.port}.log").open("w")
    server.process = subprocess.Popen(server.argv, stdout=log, stderr=subprocess.STDOUT, cwd=log_dir,
                                      env={**os.environ, "HF_HUB_OFFLINE": "1"})
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            tail = (log_dir / f"{server.port}.log").read_text()[-2000:]
            sys.exit(f"{server.name} exited with {server.process.returncode} at start:\n{tail}")
        try:
            response = httpx.get(server.url + server.ready_path, timeout=2)
            if response.status_code == 200:  # ours and llama-server answer 503 until the model is loaded
                server.loaded = what_it_serves(server)
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    stop(server)
    sys.exit(f"{server.name} did not become ready within {timeout_s:.0f} s")


def what_it_serves(server: Server) -> dict:
    """The model ids the server lists (every server here has /v1/models) and, for ours, each component's state
    and the absolute path it loaded (/api/v1/health): recorded beside every figure, checked by the benches."""
    models = httpx.get(server.url + "/v1/models", timeout=10).json()
    loaded = {"models": [m["id"] for m in models.get("data", [])]}
    if server.ready_path == "/api/v1/health":
        health = httpx.get(server.url + server.ready_path, timeout=10).json()
        loaded["components"] = {name: c["state"] for name, c in health.get("components", {}).items()}
    return loaded


def stop(server: Server) -> None:
    """SIGTERM by PID (all servers drain and exit), SIGKILL if one hangs."""
    if server.process is None or server.process.poll() is not None:
        return
    server.process.terminate()
    try:
        server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        server.process.wait(timeout=10)
