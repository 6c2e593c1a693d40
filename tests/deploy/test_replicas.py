"""The scale-out topology of compose.yaml without compose: our API (`serve.engine=openai_upstream`) in front of
Debian's nginx, which balances two real `llama-server` replicas that load the base GGUF and every domain's
adapter GGUF. Per-request domains become llama-server's `lora` field; one replica is killed under load and no
non-streamed request fails (nginx retries it on the other). Needs `nginx` (apt-get install nginx-light) and
builds llama-server once from llama-cpp-python's sources (bench/llama_server_peer.py; minutes, then cached)."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import pytest

from tests.deploy.published import REPO_ROOT, published_project
from tests.serving.conftest import free_port, serve_command, start_server_process, wait_for
from tests.serving.test_domains import LEGAL_QUESTION

pytestmark = pytest.mark.slow
DOMAINS = ("legal", "healthcare")
NGINX_CONF = """# the test's nginx: two llama-server replicas, a POST retried on the other replica when one dies
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log {prefix}/access.log;
    client_body_temp_path {prefix}/body; proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fcgi; uwsgi_temp_path {prefix}/uwsgi; scgi_temp_path {prefix}/scgi;
{upstream}
}}
"""


def nginx_binary() -> str:
    binary = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").is_file() else None)
    assert binary, "nginx is not installed: apt-get install nginx-light (`bash .ci/run test-all` does)"
    return binary


def upstream_block(listen: int, replicas: list[int]) -> str:
    """The `upstream` + `server` part of deploy/nginx.conf, pointed at this test's ports."""
    text = (Path(__file__).resolve().parents[2] / "deploy" / "nginx.conf").read_text()
    block = text[text.index("upstream llama_server"):text.rindex("}") + 1]
    servers = "\n".join(f"    server 127.0.0.1:{p} max_fails=1 fail_timeout=30s;" for p in replicas)
    block = block.replace("    server replica-1:8080 max_fails=1 fail_timeout=30s;\n"
                          "    server replica-2:8080 max_fails=1 fail_timeout=30s;", servers)
    return block.replace("listen 8080;", f"listen 127.0.0.1:{listen};")


class Process:
    def __init__(self, argv: list[str], log: Path):
        self.log = log
        self.process = subprocess.Popen(argv, stdout=log.open("w"), stderr=subprocess.STDOUT)

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)
            try:
                self.process.wait(30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def up(url: str, path: str) -> bool:
    try:
        return httpx.get(url + path, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def exported_argv(project: Path, port: int) -> list[str]:
    """`domain-llm export llama-server` for the published project: what a replica runs."""
    result = subprocess.run([sys.executable, "-m", "stages.cli", "export", "llama-server", "--json", "--port",
                             str(port), "--parallel", "2", "--params", str(project / "params.yaml")],
                            capture_output=True, text=True, timeout=120, cwd=REPO_ROOT)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["argv"]


def llama_server(binary: Path, project: Path, log_dir: Path, drop: str | None = None) -> tuple[Process, str]:
    """A replica started from the exported argv (its own binary, loopback, one thread); `drop`: leave that
    domain's adapter out."""
    port = free_port()
    argv = [str(binary), *exported_argv(project, port)[1:], "-t", "1", "-tb", "1", "-c", "512", "--no-webui"]
    argv[argv.index("--host") + 1] = "127.0.0.1"
    if drop:
        i = argv.index(str(project / "models" / "adapters" / drop / "adapter.gguf"))
        del argv[i - 1:i + 1]
    process = Process(argv, log_dir / f"llama-server-{port}.log")
    url = f"http://127.0.0.1:{port}"
    wait_for(lambda: process.process.poll() is None and up(url, "/health"), timeout_s=120, interval_s=0.2)
    return process, url


@pytest.fixture(scope="module")
def llama_server_binary() -> Path:
    from bench.llama_server_peer import DEFAULT_CACHE, find_or_build

    return find_or_build(DEFAULT_CACHE)


@pytest.fixture(scope="module")
def project(tiny_adapters, tiny_model_dir, tmp_path_factory) -> Path:
    return published_project(tmp_path_factory.mktemp("published"), tiny_adapters, tiny_model_dir)


def front_overrides(project: Path, url: str) -> list[str]:
    """Our API as a user runs it in front of the replicas: the domains found in the shared models folder."""
    models = project / "models"
    return ["serve.engine=openai_upstream", f"serve.upstream_url={url}", f"serve.model={models}/gguf/model-q4_k_m.gguf",
            f"serve.adapter_dir={models}/adapters", "serve.adapters=null", "serve.rerank=false", "serve.ui=false",
            "serve.upstream_workers=8", "serve.repeat_penalty=1.0"]


def chat(url: str, model: str, question: str = LEGAL_QUESTION, max_tokens: int = 8) -> httpx.Response:
    return httpx.post(f"{url}/v1/chat/completions", timeout=120, json={
        "model": model, "max_tokens": max_tokens, "temperature": 0,
        "messages": [{"role": "user", "content": question}]})


def test_replicas_behind_nginx_survive_losing_one(llama_server_binary, project, tmp_path):
    replicas = [llama_server(llama_server_binary, project, tmp_path) for _ in range(2)]
    listen = free_port()
    (tmp_path / "nginx.conf").write_text(NGINX_CONF.format(
        prefix=tmp_path, upstream=upstream_block(listen, [int(u.rsplit(":", 1)[1]) for _, u in replicas])))
    nginx = Process([nginx_binary(), "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")], tmp_path / "nginx.out")
    balancer = f"http://127.0.0.1:{listen}"
    ours = None
    try:
        wait_for(lambda: up(balancer, "/health"), timeout_s=30, interval_s=0.2)
        ours = start_server_process(*front_overrides(project, balancer))
        info = httpx.get(f"{ours.url}/api/v1/model/info").json()
        assert info["upstream_adapters"] == "lora"
        # Each domain is its own adapter on the replicas: the answer equals llama-server's with that adapter alone.
        listed = httpx.get(f"{replicas[0][1]}/lora-adapters").json()
        ids = {Path(e["path"]).parent.name: e["id"] for e in listed}
        answers = {}
        for model in ("base", *(f"domain-llm-{d}" for d in DOMAINS)):
            domain = model.removeprefix("domain-llm-")
            response = chat(ours.url, model)
            assert response.status_code == 200, response.text
            answers[model] = response.json()["choices"][0]["message"]["content"]
            lora = [] if model == "base" else [{"id": ids[domain], "scale": 1.0}]
            system = [] if model == "base" else [{"role": "system", "content": f"You answer {domain} questions."}]
            direct = httpx.post(f"{replicas[1][1]}/v1/chat/completions", timeout=60, json={
                "max_tokens": 8, "temperature": 0, "repeat_penalty": 1.0, "lora": lora,
                "messages": [*system, {"role": "user", "content": LEGAL_QUESTION}]}).json()
            assert answers[model] == direct["choices"][0]["message"]["content"], model
        assert len(set(answers.values())) == 3

        # Kill one replica under load: 6 clients, mixed domains, non-streamed; nginx fails over.
        outcomes: Counter = Counter()
        done, lock = [0], threading.Lock()
        stop_at = time.monotonic() + 60

        def client(i: int) -> None:
            while time.monotonic() < stop_at:
                model = ("base", *(f"domain-llm-{d}" for d in DOMAINS))[i % 3]
                try:
                    status = chat(ours.url, model, max_tokens=96).status_code
                except httpx.HTTPError as e:
                    status = type(e).__name__
                with lock:
                    outcomes[status] += 1
                    done[0] += 1
                if done[0] >= 120:
                    return
        threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
        for t in threads:
            t.start()
        wait_for(lambda: done[0] >= 20, timeout_s=60, interval_s=0.05)
        killed_after = done[0]
        replicas[0][0].stop(signal.SIGKILL)
        for t in threads:
            t.join(120)
        access = (tmp_path / "access.log").read_text().splitlines()
        errors = (tmp_path / "error.log").read_text()
        in_flight = sum("prematurely closed" in line or "reset by peer" in line for line in errors.splitlines())
        print(f"replica killed after {killed_after} requests; outcomes {dict(outcomes)}; nginx access lines "
              f"{len(access)}; requests cut mid-answer and retried: {in_flight}; nginx errors naming the dead "
              f"replica: {errors.count(replicas[0][1].split('//')[1])}")
        assert outcomes[200] == sum(outcomes.values()) >= 60, dict(outcomes)
        assert replicas[0][1].split("//")[1] in errors  # nginx did see the replica die and failed over
        assert in_flight >= 1, errors  # and answered requests the dead replica had begun, on the other one
        assert up(ours.url, "/api/v1/health")
    finally:
        if ours is not None:
            ours.stop()
        nginx.stop(signal.SIGQUIT)
        for process, _ in replicas:
            process.stop()


def test_an_adapter_missing_on_the_replica_stops_the_start_up(llama_server_binary, project, tmp_path):
    replica, url = llama_server(llama_server_binary, project, tmp_path, drop="healthcare")
    try:
        result = subprocess.run(serve_command(*front_overrides(project, url)), capture_output=True, text=True,
                                timeout=120)
    finally:
        replica.stop()
    last = result.stderr.strip().splitlines()[-1]
    assert result.returncode == 2, result.stderr[-2000:]
    assert "adapter 'healthcare'" in last and "is not loaded on upstream" in last and "--lora" in last
