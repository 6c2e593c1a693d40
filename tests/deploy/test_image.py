"""The container image, built and started here: `podman build` of the Dockerfile (no Docker engine on this
machine; `podman run` is refused by its sandbox, ../shared/FINDINGS.md), then a derived image whose build steps
run the image's own entry point: an empty models volume is refused in one line, and with a published project's
models (tests/deploy/published.py: the tiny base + two adapters) it answers /api/v1/health 200 and a chat
completion on a domain's adapter. The base is a Debian bookworm root made once with debootstrap and imported
(`localhost/debian-py:bookworm`, cached in podman's storage). Needs podman and debootstrap (apt-get install
podman debootstrap; `bash .ci/run test-all` does) and PyPI; a first build takes ~15 min (llama.cpp compiles)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.deploy.published import REPO_ROOT, published_project

pytestmark = pytest.mark.slow
BASE = "localhost/debian-py:bookworm"
IMAGE = "localhost/domain-llm:test"
CA_BUNDLE = Path("/etc/ssl/certs/ca-certificates.crt")  # what pip trusts here; mounted into the build
LOCAL_WHEELS = Path("/opt/wheels")  # this machine's CPU torch wheel (download.pytorch.org is not reachable)

CHECK = r'''
"""Run inside a build step of the derived image: the entry point, as `docker run` would start it."""
import json, os, subprocess, sys, time, urllib.request

env = {**os.environ, "DOMAIN_LLM_API_KEY": "image-test-key",
       **({"DOMAIN_LLM_DVC_PULL": "1"} if sys.argv[1] == "pull" else {})}
if sys.argv[1] == "empty":
    done = subprocess.run(["domain-llm-entrypoint"], env=env, capture_output=True, text=True, timeout=60)
    print("IMAGE-CHECK", json.dumps({"empty_rc": done.returncode, "empty_stderr": done.stderr.strip()}))
    sys.exit(0)
server = subprocess.Popen(["domain-llm-entrypoint", "serve.host=0.0.0.0", "serve.port=8000", "serve.index=null",
                           "serve.reranker=null", "threads=1"], env=env)
result = {}
try:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and server.poll() is None:
        try:
            with urllib.request.urlopen("http://127.0.0.1:8000/api/v1/health", timeout=5) as r:
                result["health"] = r.status
                break
        except Exception as e:
            result["health_error"] = str(e)
            time.sleep(1)
    body = json.dumps({"model": "domain-llm-legal", "max_tokens": 8, "temperature": 0,
                       "messages": [{"role": "user", "content": "Is a verbal agreement binding?"}]}).encode()
    request = urllib.request.Request("http://127.0.0.1:8000/v1/chat/completions", body, {
        "Content-Type": "application/json", "Authorization": "Bearer image-test-key"})
    with urllib.request.urlopen(request, timeout=120) as r:
        answer = json.load(r)
    result.update(chat_status=r.status, domain=answer.get("domain"),
                  completion_tokens=answer["usage"]["completion_tokens"], user=os.getuid())
    body = json.dumps({"domain": "legal", "question": "Is a verbal agreement binding?", "label": True,
                       "answer": answer["choices"][0]["message"]["content"] or "-"}).encode()
    request = urllib.request.Request("http://127.0.0.1:8000/api/v1/feedback", body, {
        "Content-Type": "application/json", "Authorization": "Bearer image-test-key"})
    with urllib.request.urlopen(request, timeout=30) as r:  # the image's user can write the feedback volume
        result.update(feedback_status=r.status,
                      feedback_lines=len(open("/app/data/feedback/legal.jsonl").read().splitlines()))
finally:
    server.terminate()  # a server left running would outlive the build step
    server.wait(60)
print("IMAGE-CHECK", json.dumps({f"{sys.argv[1]}_{k}": v for k, v in result.items()}))
'''

CONTAINERFILE = f"""FROM {IMAGE}
COPY check.py /tmp/check.py
RUN python3 /tmp/check.py empty
COPY --chown=domain-llm project/models /app/models
RUN python3 /tmp/check.py serve

# DOMAIN_LLM_DVC_PULL=1: the models come from the project's DVC remote at start (here a project tracking them
# in models.dvc, in place of the image's pipeline, whose outputs overlap that file's).
FROM {IMAGE}
COPY --from=0 /tmp/check.py /tmp/check.py
USER root
RUN rm /app/dvc.yaml /app/dvc.lock
USER domain-llm
COPY --chown=domain-llm remote /tmp/remote
COPY --chown=domain-llm pull/models.dvc /app/models.dvc
COPY --chown=domain-llm pull/.dvc/config /app/.dvc/config
RUN python3 /tmp/check.py pull
"""


def podman(*args: str, timeout: int = 3600) -> subprocess.CompletedProcess:
    return subprocess.run(["podman", *args], capture_output=True, text=True, timeout=timeout)


def ensure_base(cache: Path) -> None:
    """The bookworm root with Python 3.11, made once (debootstrap) and imported into podman's storage."""
    if podman("image", "exists", BASE).returncode == 0:
        return
    assert shutil.which("debootstrap"), "debootstrap is not installed: apt-get install debootstrap podman"
    root = cache / "bookworm-root"
    subprocess.run(["debootstrap", "--variant=minbase", "--include=python3,python3-venv,python3-pip,ca-certificates",
                    "bookworm", str(root), "http://deb.debian.org/debian"], check=True, capture_output=True,
                   timeout=1800)
    tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
    subprocess.run(["podman", "import", "-", BASE], stdin=tar.stdout, check=True, capture_output=True, timeout=600)
    tar.wait()


def build_args() -> list[str]:
    args = ["--isolation=chroot", "--build-arg", f"BASE={BASE}"]
    if CA_BUNDLE.is_file():
        args += ["-v", f"{CA_BUNDLE}:{CA_BUNDLE}:ro"]
    if any(LOCAL_WHEELS.glob("torch-*.whl")):
        args += ["-v", f"{LOCAL_WHEELS}:{LOCAL_WHEELS}:ro", "--build-arg", "TORCH_INDEX=",
                 "--build-arg", f"PIP_FIND_LINKS={LOCAL_WHEELS}"]
    return args


def dvc_project_with_remote(models: Path, project: Path, remote: Path) -> None:
    """A DVC project (no git) tracking `models` in models.dvc, pushed to `remote`; its .dvc/config names the
    remote where the derived image puts it (/tmp/remote), config.local the host path the push used."""
    shutil.copytree(models, project / "models")
    for argv in (["init", "--no-scm"], ["remote", "add", "-d", "store", "/tmp/remote"],
                 ["remote", "modify", "--local", "store", "url", str(remote)], ["add", "models"], ["push"]):
        subprocess.run([sys.executable, "-m", "dvc", *argv], cwd=project, check=True, capture_output=True, timeout=300)


def checks(output: str) -> dict:
    found: dict = {}
    for line in output.splitlines():
        if line.startswith("IMAGE-CHECK "):
            found.update(json.loads(line.removeprefix("IMAGE-CHECK ")))
    return found


def test_the_image_builds_and_its_entry_point_serves(tiny_adapters, tiny_model_dir, tmp_path):
    assert shutil.which("podman"), "podman is not installed: apt-get install podman debootstrap"
    ensure_base(Path.home() / ".cache" / "domain-llm" / "container")
    started = time.monotonic()
    built = podman("build", *build_args(), "-t", IMAGE, str(REPO_ROOT))
    build_s = time.monotonic() - started
    assert built.returncode == 0, (built.stdout + built.stderr)[-4000:]
    size_mb = int(podman("image", "inspect", "--format", "{{.Size}}", IMAGE).stdout.strip()) / 1e6

    context = tmp_path / "context"
    published_project(context / "project", tiny_adapters, tiny_model_dir)
    dvc_project_with_remote(context / "project" / "models", context / "pull", context / "remote")
    (context / "check.py").write_text(CHECK)
    (context / "Containerfile").write_text(CONTAINERFILE)
    derived = podman("build", "--isolation=chroot", "--no-cache", "-f", str(context / "Containerfile"),
                     "-t", "localhost/domain-llm-check:test", str(context), timeout=900)
    podman("rmi", "-f", "localhost/domain-llm-check:test")
    found = checks(derived.stdout)
    print(f"image {IMAGE}: {size_mb:.0f} MB, build {build_s:.0f} s; in-build start: {found}")
    assert derived.returncode == 0, (derived.stdout + derived.stderr)[-4000:]
    assert found["empty_rc"] == 2 and found["empty_stderr"].startswith("error: /app/models is empty")
    for mode in ("serve", "pull"):
        assert found[f"{mode}_health"] == 200 and found[f"{mode}_chat_status"] == 200, mode
        assert found[f"{mode}_domain"] == "legal" and 1 <= found[f"{mode}_completion_tokens"] <= 8, mode
        assert found[f"{mode}_user"] != 0  # the server runs as the image's own user, not root
        assert found[f"{mode}_feedback_status"] == 201 and found[f"{mode}_feedback_lines"] == 1, mode
