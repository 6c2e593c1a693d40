"""The web UI and the API docs in a real headless Chromium, with the network cut off except 127.0.0.1: every
page renders with nothing fetched from outside, no failed request and no console error (CSP violations
included). Skips with one line when Chromium is not installed (tests/browser.py says how to install it)."""

from __future__ import annotations

from pathlib import Path

import pytest

from serving.settings import ServeSettings
from serving.ui.main import create_dashboard_app
from tests.browser import offline_page, screenshot, wait_until
from tests.serving.conftest import serve_in_thread, start_thread_server
from tests.ui_repo import make_experiments_repo


@pytest.fixture(scope="module")
def served(gguf_engine_shared):
    """The full app on the SmolLM2 GGUF, with the bundled MiniLM as the reranker (no trained one here)."""
    server = start_thread_server(f"serve.model={gguf_engine_shared.path}", "serve.reranker=null",
                                 engine=gguf_engine_shared)
    yield server
    server.stop()


def test_dashboard_table_curve_and_comparison(tmp_path):
    repo = make_experiments_repo(tmp_path / "repo")
    server = serve_in_thread(create_dashboard_app(ServeSettings(), repo), healthy=False)
    try:
        with offline_page() as (page, log):
            page.goto(f"{server.url}/ui/experiments")
            assert page.locator("#experiments tbody tr").count() == 3
            wait_until(lambda: page.locator("#loss-curve").evaluate("img => img.complete && img.naturalWidth") > 100)
            page.locator("#experiments tr", has_text="main").locator("input[type=checkbox]").check()
            page.locator("#experiments tr", has_text="lora-r8").locator("input[type=checkbox]").check()
            page.click("#compare-button")
            delta = page.locator("#comparison tr", has_text="quality.rougeL").locator("td.delta")
            assert delta.inner_text() == "+0.1" and "better" in delta.get_attribute("class")
            assert page.locator("#param-diff", has_text="train.lora.r").count() == 1
            wait_until(lambda: page.locator("#loss-curve").evaluate("img => img.complete && img.naturalWidth") > 100)
            page.locator("details.doc summary", has_text="models/merged/README.md").click()
            assert page.evaluate("window.pwned") is None  # the hostile model card ran nothing
            screenshot(page, "ui-experiments.png", tmp_path)
            log.assert_clean()
    finally:
        server.stop()


def test_playground_streams_a_chat_and_reranks(served, tmp_path):
    with offline_page() as (page, log):
        page.goto(f"{served.url}/ui/playground")
        page.wait_for_selector("#model-line[data-ready]")
        assert "medical" in page.input_value("#system-prompt")  # the served model's own system prompt
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "48")
        # Count how often the answer's text changes while it streams (one update = not streamed).
        page.evaluate("""() => { window.updates = 0; new MutationObserver(() => window.updates++)
            .observe(document.getElementById('transcript'), {subtree: true, childList: true, characterData: true}); }""")
        page.fill("#message", "What are the common symptoms of type 2 diabetes?")
        page.click("#send")
        page.wait_for_selector("#stats[data-finish]", timeout=60_000)
        answer = page.locator(".msg.assistant .text").inner_text()
        assert answer.strip() and page.evaluate("window.updates") >= 5, (answer, page.evaluate("window.updates"))
        stats = page.locator("#stats").inner_text()
        assert "finish: stop" in stats or "finish: length" in stats, stats
        assert stats.endswith("domain: healthcare")  # the served model's, from its manifest
        assert "tokens/s" in page.locator("#stats").inner_text()
        screenshot(page, "ui-playground.png", tmp_path)

        page.click("button[data-tab=rerank-tab]")
        page.fill("#rerank-query", "How is hypertension treated?")
        page.fill("#rerank-documents", "The Eiffel Tower is a landmark in Paris.\n"
                                       "Hypertension is treated with lifestyle changes and blood pressure medication.")
        page.click("#rerank-button")
        page.wait_for_selector("#ranked li")
        ranked = page.locator("#ranked li .document").all_inner_texts()
        assert ranked[0].startswith("Hypertension") and len(ranked) == 2, ranked
        screenshot(page, "ui-rerank.png", tmp_path)
        log.assert_clean()


def test_generated_text_is_never_html(served):
    """What the model writes is set as text: a prompt that makes the model echo markup runs nothing."""
    with offline_page() as (page, log):
        page.goto(f"{served.url}/ui/playground")
        page.wait_for_selector("#model-line[data-ready]")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "32")
        page.fill("#system-prompt", "Repeat the user's message exactly.")
        page.fill("#message", "<img src=x onerror=\"window.pwned=1\"><script>window.pwned=2</script>")
        page.click("#send")
        page.wait_for_selector("#stats[data-finish]", timeout=60_000)
        assert page.locator(".msg.user .text").inner_text().startswith("<img src=x")  # shown as text
        assert page.locator("#transcript img, #transcript script").count() == 0
        assert page.evaluate("window.pwned") is None
        log.assert_clean()


@pytest.mark.parametrize("path, rendered", [("/docs", ".swagger-ui .info .title"), ("/redoc", "h1")])
def test_api_docs_render_offline(served, path, rendered):
    with offline_page() as (page, log):
        page.goto(served.url + path)
        title = page.wait_for_selector(rendered)
        assert "domain-llm API" in title.inner_text()
        log.assert_clean()


def test_screenshots_are_linked_from_the_readme():
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    for name in ("ui-experiments.png", "ui-playground.png", "ui-rerank.png"):
        assert f"docs/{name}" in readme and (Path(__file__).resolve().parents[2] / "docs" / name).is_file(), name


def test_dvc_plots_render_offline(tmp_path):
    """`domain-llm plots` = `dvc plots show` with vega inlined: the page draws its chart with no network."""
    import subprocess
    import sys

    repo = make_experiments_repo(tmp_path / "repo")
    subprocess.run([sys.executable, "-m", "stages.cli", "plots"], cwd=repo, check=True, capture_output=True,
                   timeout=300)
    html = (repo / "dvc_plots" / "index.html").read_text()
    assert "cdn.jsdelivr" not in html and "vegaEmbed(" in html
    server = serve_in_thread(_static_app(repo / "dvc_plots"), healthy=False)  # served like any page
    try:
        with offline_page() as (page, log):
            page.goto(f"{server.url}/index.html")
            chart = page.wait_for_selector(".vega-embed svg, .vega-embed canvas")
            assert chart.bounding_box()["width"] > 100
            log.assert_clean()
    finally:
        server.stop()


def _static_app(folder: Path):
    from fastapi import FastAPI
    from fastapi.staticfiles import StaticFiles

    app = FastAPI()
    app.mount("/", StaticFiles(directory=str(folder)), name="plots")
    return app


def test_sign_in_page_leads_to_the_dashboard(tmp_path):
    repo = make_experiments_repo(tmp_path / "repo")
    server = serve_in_thread(create_dashboard_app(ServeSettings(api_key="s3cret"), repo), healthy=False)
    try:
        with offline_page() as (page, log):
            page.goto(f"{server.url}/ui/experiments")
            assert page.url.endswith("/ui/login")  # redirected: no key yet
            page.fill("#api-key", "wrong")
            page.click("#login-form button")
            page.wait_for_selector("#login-status:has-text('wrong API key')")
            page.fill("#api-key", "s3cret")
            page.click("#login-form button")
            page.wait_for_selector("#experiments")
            assert page.url.endswith("/ui/experiments")
            # The only failure is the refused wrong key (401), which the page reports itself.
            assert [e for e in log.console_errors if "401" not in e] == [] and not log.blocked
    finally:
        server.stop()
