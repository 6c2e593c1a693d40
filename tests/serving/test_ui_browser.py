"""The web UI and the API docs in a real headless Chromium, with the network cut off except 127.0.0.1: every
page renders with nothing fetched from outside, no failed request and no console error (CSP violations
included). Skips with one line when Chromium is not installed (tests/browser.py says how to install it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from serving.settings import ServeSettings
from serving.ui.main import create_dashboard_app
from tests.browser import offline_page, screenshot
from tests.serving.conftest import serve_in_thread, start_thread_server
from tests.ui_repo import make_experiments_repo


@pytest.fixture(scope="module")
def served(gguf_engine_shared):
    """The full app on the SmolLM2 GGUF, with the bundled MiniLM as the reranker (no trained one here)."""
    server = start_thread_server(f"serve.model={gguf_engine_shared.path}", "serve.reranker=null",
                                 engine=gguf_engine_shared)
    yield server
    server.stop()


FACT = "The Quenth observatory was founded in 1923 by the astronomer Ilsa Marrow on Mount Zorblax."
# Markup in a document must reach the page as text: the index keeps it, /ask returns it as a passage.
MARKUP = 'A telescope page once held <img src=x onerror="window.pwned=1"> in its text.'


@pytest.fixture(scope="module")
def ask_server(gguf_engine_shared, tmp_path_factory):
    """The full app with a real index (the index stage over three small documents, as tests/serving/test_ask.py
    builds one), so the playground's Ask tab has a real /api/v1/ask behind it."""
    from stages.config import compose
    from stages.index.main import main

    root = tmp_path_factory.mktemp("ui_ask")
    docs = root / "docs"
    docs.mkdir()
    (docs / "observatory.md").write_text(f"# Quenth observatory\n\n{FACT}")
    (docs / "markup.md").write_text(f"# Telescope markup\n\n{MARKUP}")
    (docs / "others.jsonl").write_text(json.dumps({"id": "violin", "title": "Violin", "text": "A violin has four "
                                                   "strings tuned in fifths and is played with a bow."}) + "\n")
    main(compose([f"index.docs_dir={docs}", f"paths.index={root / 'index'}", f"paths.metrics={root}"]))
    server = start_thread_server(f"serve.model={gguf_engine_shared.path}", f"serve.index={root / 'index'}",
                                 "serve.rerank=false", engine=gguf_engine_shared)
    yield server
    server.stop()


def open_ask_tab(page, url: str) -> None:
    page.goto(f"{url}/ui/playground")
    page.wait_for_selector("#model-line[data-ready]")
    page.click("button[data-tab=ask-tab]")


def answering(status: int, body: dict):
    """A Playwright route handler that answers in place of the server (the request never leaves the page)."""
    return lambda route: route.fulfill(status=status, content_type="application/json", body=json.dumps(body))


def crafted_answer() -> dict:
    """An /ask response as the server sends one, with a citation the model made up: [4] was removed by the
    server (invalid_citations), [5] is still in the text (flagged by the page itself), and markup everywhere."""
    passages = [("observatory.md", "Quenth observatory", FACT), ("markup.md", "<b>Telescope</b> markup", MARKUP),
                ("violin", "Violin", "A violin has four strings.")]
    return {"answer": 'Ilsa Marrow founded it in 1923 [1]. See also [2][5]. <img src=x onerror="window.pwned=2">',
            "citations": [{"number": n, "doc_id": d, "title": t, "chunk": c, "score": 0.03, "rerank_score": None}
                          for n, (d, t, c) in enumerate(passages, start=1)],
            "cited": [1, 2], "invalid_citations": [4], "finish_reason": "stop",
            "usage": {"prompt_tokens": 190, "completion_tokens": 25, "total_tokens": 215},
            "retrieval": {"mode": "hybrid", "reranked": False, "seconds": 0.01, "passages_dropped": 0},
            "domain": "healthcare", "routing": None}


def test_ask_tab_answers_from_the_index_with_its_passages(ask_server, tmp_path):
    """The real /api/v1/ask: the answer, then the passages it was given with their sources, each revealed on
    click (and every [n] the model wrote opens its passage); the passage with markup is shown as text."""
    with offline_page() as (page, log):
        open_ask_tab(page, ask_server.url)
        assert page.locator("#ask-unavailable").is_hidden()
        page.fill("#ask-question", "Who founded the Quenth observatory?")
        page.fill("#ask-top-k", "3")
        page.fill("#ask-max-tokens", "40")
        page.click("#ask-button")
        page.wait_for_selector("#ask-status[data-done]", timeout=60_000)
        assert page.get_attribute("#ask-status", "data-done") == "answer", page.inner_text("#ask-status")
        assert "Marrow" in page.inner_text("#ask-answer")  # only the document knows it
        assert "3 passages" in page.inner_text("#ask-status")
        assert page.locator("#ask-passages li").count() == 3
        sources = page.locator("#ask-passages .source").all_inner_texts()
        assert sources[0].startswith("observatory.md") and any(s.startswith("markup.md") for s in sources)
        # The small model may or may not cite: whatever [n] it wrote opens passage n.
        for i in range(page.locator("#ask-answer button.cite").count()):
            button = page.locator("#ask-answer button.cite").nth(i)
            button.click()
            assert page.locator(f"#ask-passage-{button.get_attribute('data-n')} .passage").is_visible()
        markup = page.locator("#ask-passages li", has_text="markup.md")
        assert not markup.locator(".passage").is_visible()
        markup.locator("summary").click()
        assert markup.locator(".passage").inner_text().endswith(MARKUP.split("# ")[-1])  # shown as text
        assert page.locator("#ask-tab img").count() == 0 and page.evaluate("window.pwned") is None
        screenshot(page, "ui-ask.png", tmp_path)
        log.assert_clean()


def test_ask_tab_links_citations_and_flags_invalid_ones(ask_server, tmp_path):
    """The page's rendering of an answer the test controls (the model's citations cannot be): /api/v1/ask is
    answered by the test with a made-up citation and markup in the answer, a title and a passage."""
    with offline_page() as (page, log):
        page.route("**/api/v1/ask", answering(200, crafted_answer()))
        open_ask_tab(page, ask_server.url)
        page.fill("#ask-question", "Who founded the Quenth observatory?")
        page.click("#ask-button")
        page.wait_for_selector("#ask-status[data-done=answer]")
        answer = page.locator("#ask-answer")
        assert answer.inner_text().startswith("Ilsa Marrow founded it in 1923 [1]. See also [2][5]. <img src=x")
        assert answer.locator("button.cite").all_inner_texts() == ["[1]", "[2]"]
        assert answer.locator(".cite.invalid").all_inner_texts() == ["[5]"]  # no passage 5: not a link
        note = page.locator("#ask-invalid")
        assert note.is_visible() and note.inner_text() == (
            "⚠ The model cited [4], [5] but only 3 passages were given; the server removed [4] from the answer.")
        passage = page.locator("#ask-passage-2 .passage")
        assert not passage.is_visible()
        answer.locator("button.cite", has_text="[2]").click()
        assert passage.is_visible() and passage.inner_text() == MARKUP  # markup as text, revealed by its [2]
        assert "shown" in page.get_attribute("#ask-passage-2", "class")
        assert page.locator("#ask-passage-2 .title").inner_text() == "[2] <b>Telescope</b> markup"
        assert page.locator("#ask-passage-2 .source").inner_text().startswith("markup.md")
        answer.locator("button.cite", has_text="[1]").click()
        assert page.locator("#ask-passage-1 .passage").inner_text() == FACT
        assert page.locator("#ask-tab img, #ask-tab b, #ask-tab script").count() == 0
        assert page.evaluate("window.pwned") is None
        screenshot(page, "ui-ask-citations.png", tmp_path)
        log.assert_clean()


def test_ask_tab_says_when_there_is_no_index(served, ask_server):
    """No serve.index: the tab says so at once and cannot be submitted. An index that cannot be used (the route
    answers 503) or a server without the route (404): the tab says so on asking, with the server's reason."""
    with offline_page() as (page, log):
        open_ask_tab(page, served.url)
        assert "no document index" in page.inner_text("#ask-unavailable")
        assert page.locator("#ask-button").is_disabled()
        log.assert_clean()
    for status, message, shown in [(503, "index: models/index is missing; run `dvc repro index`",
                                    "not available right now: index: models/index is missing"),
                                   (404, "Not Found", "no document index")]:
        with offline_page() as (page, log):
            page.route("**/api/v1/ask", answering(status, {"error": {"message": message, "code": status}}))
            open_ask_tab(page, ask_server.url)
            page.fill("#ask-question", "Who founded the Quenth observatory?")
            page.click("#ask-button")
            page.wait_for_selector("#ask-status[data-done=error]", state="attached")
            assert page.locator("#ask-unavailable").is_visible() and shown in page.inner_text("#ask-unavailable")
            assert page.locator("#ask-result").is_hidden()
            # the browser logs the refused request itself; nothing else may fail
            assert [e for e in log.console_errors if str(status) not in e] == [] and not log.blocked


def test_dashboard_table_curve_and_comparison(tmp_path):
    repo = make_experiments_repo(tmp_path / "repo")
    server = serve_in_thread(create_dashboard_app(ServeSettings(), repo), healthy=False)
    try:
        with offline_page() as (page, log):
            page.goto(f"{server.url}/ui/experiments")
            assert page.locator("#experiments tbody tr").count() == 3
            # the curves are SVG in the page itself: the workspace's train loss, then both compared experiments'
            assert page.locator("#loss-model svg.chart g.series").count() == 1
            page.locator("#experiments tr", has_text="main").locator("input[type=checkbox]").check()
            page.locator("#experiments tr", has_text="lora-r8").locator("input[type=checkbox]").check()
            page.click("#compare-button")
            delta = page.locator("#comparison tr", has_text="quality.rougeL").locator("td.delta")
            assert delta.inner_text() == "+0.1" and "better" in delta.get_attribute("class")
            assert page.locator("#param-diff", has_text="train.lora.r").count() == 1
            assert page.locator("#loss-model svg.chart g.series").count() == 2
            assert page.locator("#loss-model svg.chart").bounding_box()["width"] > 500
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
        assert page.locator(".msg.assistant .feedback").count() == 0  # serve.feedback_dir is null here
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


@pytest.fixture()
def feedback_server(gguf_engine_shared, tmp_path):
    server = start_thread_server(f"serve.model={gguf_engine_shared.path}", "serve.rerank=false",
                                 f"serve.feedback_dir={tmp_path / 'feedback'}", engine=gguf_engine_shared)
    yield server
    server.stop()


def test_thumbs_up_keeps_the_answer_for_preference_tuning(feedback_server, tmp_path):
    """👍 under a chat answer posts it to /api/v1/feedback: the line the server appends holds the question, the
    answer as shown, the domain that answered and the system prompt sent; the buttons then say thanks."""
    with offline_page() as (page, log):
        page.goto(f"{feedback_server.url}/ui/playground")
        page.wait_for_selector("#model-line[data-ready]")
        page.fill("#temperature", "0")
        page.fill("#max-tokens", "16")
        page.fill("#message", "What is asthma?")
        page.click("#send")
        page.wait_for_selector("#stats[data-finish]", timeout=60_000)
        page.click(".msg.assistant button.vote[data-label=good]")
        page.wait_for_selector(".msg.assistant .feedback[data-sent]")
        bar = page.locator(".msg.assistant .feedback")
        assert bar.get_attribute("data-sent") == "good" and bar.locator(".feedback-status").inner_text() == "Thanks!"
        assert bar.locator("button.vote[disabled]").count() == 2 and bar.locator("button.chosen").count() == 1
        [line] = (tmp_path / "feedback" / "healthcare.jsonl").read_text(encoding="utf-8").splitlines()
        record = json.loads(line)
        assert (record["question"], record["label"], record["domain"]) == ("What is asthma?", True, "healthcare")
        assert record["answer"] == page.locator(".msg.assistant .text").text_content() != ""
        assert record["system"] == page.input_value("#system-prompt").strip() and "medical" in record["system"]
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
    for name in ("ui-experiments-domains.png", "ui-playground.png", "ui-ask-citations.png", "ui-rerank.png"):
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
