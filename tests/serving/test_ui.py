"""The web UI's server side over real HTTP (uvicorn on 127.0.0.1): the dashboard reads a real DVC repo with an
experiment, compares rows, draws curves, escapes what it shows, sends a CSP, and sits behind the API key.
The browser-driven tests are in test_ui_browser.py."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest

from serving.settings import ServeSettings
from serving.ui.experiments import ExperimentRow, compare_rows, list_experiments
from serving.ui.main import create_dashboard_app
from tests.serving.conftest import serve_in_thread
from tests.ui_repo import make_experiments_repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_experiments_repo(tmp_path_factory.mktemp("ui") / "repo")


@pytest.fixture(scope="module")
def dashboard(repo):
    server = serve_in_thread(create_dashboard_app(ServeSettings(), repo), healthy=False)
    yield server
    server.stop()


def test_experiments_come_from_dvc_exp_show(repo):
    rows = {r.name: r for r in list_experiments(repo)}
    assert {"workspace", "main", "lora-r8"} <= set(rows), rows
    assert rows["lora-r8"].kind == "experiment" and rows["main"].kind == "commit"
    assert rows["lora-r8"].params["train.lora.r"] == 8 and rows["main"].params["train.lora.r"] == 4
    assert rows["lora-r8"].metrics["quality.rougeL"] == 0.5


def test_comparison_gives_deltas_and_says_which_way_is_better():
    a = ExperimentRow("a" * 40, "a", "commit", None, {"train.lora.r": 4, "seed": 1},
                      {"quality.rougeL": 0.4, "quality.perplexity": 5.0})
    b = ExperimentRow("b" * 40, "b", "experiment", None, {"train.lora.r": 8, "seed": 1},
                      {"quality.rougeL": 0.5, "quality.perplexity": 4.5})
    result = compare_rows(a, b)
    by_name = {m["name"]: m for m in result["metrics"]}
    assert by_name["quality.rougeL"]["delta"] == pytest.approx(0.1) and by_name["quality.rougeL"]["better"]
    assert by_name["quality.perplexity"]["delta"] == pytest.approx(-0.5) and by_name["quality.perplexity"]["better"]
    assert result["params"] == [{"name": "train.lora.r", "a": 4, "b": 8}]


def test_dashboard_page_table_comparison_and_tables(dashboard, repo):
    page = httpx.get(f"{dashboard.url}/ui/experiments", timeout=60)
    assert page.status_code == 200
    assert "default-src 'none'" in page.headers["content-security-policy"]
    revs = re.findall(r'<tr data-rev="([^"]+)"', page.text)
    assert revs[0] == "workspace" and len(revs) == 3, revs
    assert '<th class="param">train.lora.r</th>' in page.text  # the only changed param is a column
    assert "train.lr" not in page.text
    rows = {r.name: r.rev for r in list_experiments(repo)}
    compared = httpx.get(f"{dashboard.url}/ui/experiments",
                         params=[("compare", rows["main"]), ("compare", rows["lora-r8"])], timeout=60).text
    table = compared[compared.index('id="comparison"'):compared.index('id="param-diff"')]
    assert re.search(r"quality\.rougeL</td>.*?0\.4</td>.*?0\.5</td>.*?better\">\+0\.1<", table, re.S), table
    assert re.search(r"quality\.perplexity</td>.*?better\">-1<", table, re.S), table
    assert "q4_k_m" in compared and "0.93" in compared  # quantization and reranker tables


def test_loss_curves_are_svg_drawn_on_the_server(dashboard, repo):
    rows = {r.name: r.rev for r in list_experiments(repo)}
    svg = httpx.get(f"{dashboard.url}/ui/charts/loss.svg", params=[("rev", rows["main"]), ("rev", rows["lora-r8"])],
                    timeout=60)
    assert svg.status_code == 200 and svg.headers["content-type"].startswith("image/svg+xml")
    legend = re.findall(r'<g class="legend-item" data-label="([^"]+)">.*?stroke="(#[0-9a-f]{6})"', svg.text)
    assert legend == [("main: train loss", "#1f77b4"), ("lora-r8: train loss", "#ff7f0e")], legend  # a colour each
    assert svg.text.count('<path class="line"') == 2 and " style=" not in svg.text
    assert not re.search(r'(?:href|src)="(?!#)', svg.text), "the SVG refers to nothing outside itself"
    # A request cannot put an option or a ref expression on git's command line.
    assert httpx.get(f"{dashboard.url}/ui/charts/loss.svg", params={"rev": "--output=/tmp/x"}).status_code == 404


def test_model_card_markup_is_shown_as_text(dashboard):
    page = httpx.get(f"{dashboard.url}/ui/experiments", timeout=60).text
    assert "<script>window.pwned" not in page and "&lt;script&gt;window.pwned = 1&lt;/script&gt;" in page
    assert 'onerror="window.pwned' not in page and 'href="javascript:' not in page
    assert "<td>rougeL</td>" in page  # the card's markdown table is rendered


def test_dashboard_without_a_dvc_repo_says_so(tmp_path):
    server = serve_in_thread(create_dashboard_app(ServeSettings(), tmp_path), healthy=False)
    try:
        page = httpx.get(f"{server.url}/ui/experiments", timeout=60)
        assert page.status_code == 503 and "dvc exp show" in page.text
    finally:
        server.stop()


def test_ui_is_behind_the_api_key(repo):
    server = serve_in_thread(create_dashboard_app(ServeSettings(api_key="s3cret"), repo), healthy=False)
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        refused = client.get("/ui/experiments", follow_redirects=False)
        assert refused.status_code == 303 and refused.headers["location"] == "/ui/login"
        assert client.get("/ui/charts/loss.svg", follow_redirects=False).status_code == 303
        assert client.post("/ui/login", json={"api_key": "wrong"}).status_code == 401
        assert client.post("/ui/login", json={"api_key": "x" * 5000}).status_code == 422  # bounded
        assert client.post("/ui/login", content=b"{" * 2_000_000,
                           headers={"Content-Type": "application/json"}).status_code == 413
        assert "domain_llm_ui" not in client.cookies
        assert client.get("/ui/experiments", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        signed_in = client.post("/ui/login", json={"api_key": "s3cret"})
        assert signed_in.status_code == 204
        cookie = signed_in.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "s3cret" not in cookie
        assert client.get("/ui/experiments").status_code == 200
    finally:
        server.stop()


def test_served_app_has_the_ui_and_offline_docs(gguf_overrides):
    from tests.serving.conftest import start_thread_server

    server = start_thread_server(*gguf_overrides, "serve.rerank=false", "serve.api_key=k3y", healthy=False)
    try:
        client = httpx.Client(base_url=server.url, timeout=60)
        for path in ("/docs", "/redoc"):
            html = client.get(path).text
            assets = re.findall(r'(?:src|href)="([^"]+)"', html)
            assert assets and all(a.startswith(("/docs-assets/", "/openapi.json")) for a in assets), assets
            assert "cdn" not in html and "fonts.googleapis" not in html
            for asset in assets:
                assert client.get(asset).status_code == 200, asset
        assert client.get("/v1/models").status_code == 401
        assert client.post("/ui/login", json={"api_key": "k3y"}).status_code == 204
        assert client.get("/v1/models").status_code == 200  # the playground's session cookie works on the API
        playground = client.get("/ui/playground")
        assert playground.status_code == 200
        # No serve.index: no /api/v1/ask route, and the Ask tab says so up front instead of failing on submit.
        assert client.post("/api/v1/ask", json={"question": "Who?"}).status_code == 404
        assert 'data-tab="ask-tab"' in playground.text and "no document index" in playground.text
        assert "<fieldset disabled>" in playground.text
    finally:
        server.stop()


def test_domain_llm_ui_serves_the_dashboard_without_a_model(repo):
    """The `domain-llm ui` command in a repository: the dashboard answers, no model is loaded."""
    import subprocess
    import sys

    from tests.serving.conftest import free_port, wait_for

    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "stages.cli", "ui", f"serve.port={port}"], cwd=repo,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def answered():
            try:
                return httpx.get(f"http://127.0.0.1:{port}/ui/experiments", timeout=30)
            except httpx.TransportError:
                return None

        page = wait_for(answered, timeout_s=60)
        assert page is not None and page.status_code == 200 and "lora-r8" in page.text
        assert httpx.get(f"http://127.0.0.1:{port}/ui/playground").status_code == 404  # no model, no playground
    finally:
        process.terminate()
        process.wait(30)
