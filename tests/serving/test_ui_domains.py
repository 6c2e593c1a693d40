"""The experiments page of a multi-domain repository (metrics/<domain>/*.json, as the pipeline writes them): one
section per domain with its own metrics table and loss curves, a shared section for what all domains share,
loss curves a reader can tell apart (a colour per series, a legend), and a page that fits a 1280-px window.
Over real HTTP against a real git + DVC repo with a saved experiment, then in a real Chromium (tests/browser.py)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from serving.settings import ServeSettings
from serving.ui.charts import Line, line_chart, nice_ticks
from serving.ui.experiments import list_experiments, metric_groups
from serving.ui.main import create_dashboard_app
from tests.browser import offline_page, screenshot
from tests.pipeline_repo import run
from tests.serving.conftest import serve_in_thread

DOMAINS = ("healthcare", "legal", "finance")
SHARED = ("metrics/reranker.json", "metrics/routing.json", "metrics/index.json")
DVC_YAML = "stages:\n  headline:\n    cmd: domain-llm headline\n    params:\n      - train\n    metrics:\n" + "".join(
    f"      - {path}:\n          cache: false\n" for path in [f"metrics/{d}/headline.json" for d in DOMAINS] + list(SHARED)
) + "    plots:\n" + "".join(f"      - metrics/{d}/train_live/plots/metrics:\n          cache: false\n          x: step\n"
                             for d in DOMAINS)


def headline(rouge: float, loss: float) -> dict:
    """A domain's headline.json as stages/headline writes it: six sections, 20 numbers."""
    return {"quality": {"rougeL": rouge, "bleu": 0.16, "exact_match": 0.01, "semantic_similarity": 0.81,
                        "perplexity": 3.76, "stop_rate": 1.0, "repetition_rate": 0.0, "rougeL_vs_base": 0.29},
            "training": {"eval_loss": loss, "tokens_per_s": 252.7},
            "rerank": {"mrr_at_10": 0.88, "biencoder_mrr_at_10": 0.75},
            "retrieval": {"hybrid_mrr_at_10": 0.81, "rerank_mrr_at_10": 0.94},
            "grounded": {"rougeL_closed_book": 0.44, "rougeL_with_retrieval": 0.8},
            "gguf": {"adapter_q4_k_m_size_mb": 129.53, "adapter_q4_k_m_decode_tok_s": 126.0,
                     "adapter_q4_k_m_dppl_pct": 3.316, "merged_q4_k_m_dppl_pct": 3.435}}


def write_state(repo: Path, lora_r: int, shift: float) -> None:
    (repo / "params.yaml").write_text(f"train:\n  lr: 0.001\n  lora:\n    r: {lora_r}\n")
    for i, domain in enumerate(DOMAINS):
        folder = repo / "metrics" / domain
        (folder / "train_live/plots/metrics/train").mkdir(parents=True, exist_ok=True)
        (folder / "train_live/plots/metrics/eval").mkdir(parents=True, exist_ok=True)
        (folder / "headline.json").write_text(json.dumps(headline(0.40 + shift + i / 100, 1.3 - shift)))
        train = [2.6 - i / 10 - shift, 2.0 - shift, 1.6 - shift, 1.4 - shift]
        (folder / "train_live/plots/metrics/train/loss.tsv").write_text(
            "step\tloss\n" + "".join(f"{(s + 1) * 10}\t{v:.3f}\n" for s, v in enumerate(train)))
        (folder / "train_live/plots/metrics/eval/loss.tsv").write_text(
            "step\tloss\n" + "".join(f"{(s + 1) * 20}\t{v + 0.2:.3f}\n" for s, v in enumerate(train[::2])))


def make_domains_repo(repo: Path) -> Path:
    """main (lora.r=4) + experiment `lora-r8` (every domain's rougeL +0.1), three domains and the shared files."""
    repo.mkdir(parents=True)
    run(["git", "init", "-q", "-b", "main"], repo)
    run(["dvc", "init", "-q"], repo)
    (repo / "dvc.yaml").write_text(DVC_YAML)
    write_state(repo, 4, 0.0)
    metrics = repo / "metrics"
    (metrics / "reranker.json").write_text(json.dumps(
        {"bm25_mrr_at_10": 0.5573, "paraphrase_bm25_mrr_at_10": 0.5758, "trained_mrr_at_10": 0.8814,
         "trained_recall_at_1": 0.807, "benchmark_split": "test", "train_steps": 120}))
    (metrics / "routing.json").write_text(json.dumps(
        {"questions": 300, "method": "nearest centroid", "accuracy": 0.9767,
         "per_domain": {"healthcare": 1.0, "legal": 0.97, "finance": 0.96},
         "confusion": {"healthcare": {"healthcare": 100, "legal": 0, "finance": 0},
                       "legal": {"healthcare": 1, "legal": 97, "finance": 2},
                       "finance": {"healthcare": 0, "legal": 4, "finance": 96}}}))
    (metrics / "index.json").write_text(json.dumps({"documents": 122, "chunks": 417, "source": "fact sheets"}))
    (metrics / "quantize.json").write_text(json.dumps({"q4_k_m": {"size_mb": 119.72, "delta_ppl_pct": 7.468}}))
    for domain in DOMAINS:
        (metrics / domain / "quantize.json").write_text(json.dumps(
            {"merged_q4_k_m": {"size_mb": 119.72, "delta_ppl_pct": 3.435},
             "adapter_q4_k_m": {"size_mb": 129.53, "delta_ppl_pct": 3.316}}))
    run("git add -A && git commit -qm 'baseline'", repo)
    write_state(repo, 8, 0.1)
    run(["dvc", "exp", "save", "-n", "lora-r8"], repo)
    write_state(repo, 4, 0.0)  # the workspace back at the commit
    return repo


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    return make_domains_repo(tmp_path_factory.mktemp("ui_domains") / "repo")


@pytest.fixture(scope="module")
def dashboard(repo):
    server = serve_in_thread(create_dashboard_app(ServeSettings(), repo), healthy=False)
    yield server
    server.stop()


def section(html: str, domain: str) -> str:
    start = html.index(f'<section class="domain" id="domain-{domain}"')
    return html[start:html.index("</section>", start)]


def strokes(svg: str) -> list[str]:
    return re.findall(r'<path class="line" [^>]*stroke="(#[0-9a-f]{6})"', svg)


def test_metrics_are_grouped_by_domain_then_section(repo):
    groups = metric_groups(list_experiments(repo))
    assert [g.domain for g in groups] == ["finance", "healthcare", "legal"]
    sections = dict(groups[1].sections)
    assert list(sections) == ["quality", "training", "rerank", "retrieval", "grounded", "gguf"]
    assert sections["quality"][0] == ("healthcare.quality.rougeL", "rougeL")


def test_page_has_a_section_per_domain_and_a_shared_one(dashboard, repo):
    html = httpx.get(f"{dashboard.url}/ui/experiments", timeout=60).text
    assert re.findall(r'<section class="domain" id="domain-([a-z]+)"', html) == ["finance", "healthcare", "legal"]
    header = html[html.index('<table id="experiments">'):html.index("</thead>", html.index('<table id="experiments">'))]
    assert "rougeL" not in header and '<th class="param">train.lora.r</th>' in header  # metrics moved out
    legal = section(html, "legal")
    assert re.search(r'<tr class="section"><th colspan="4">quality</th></tr>', legal)  # 3 experiments + name
    row = legal[legal.index('data-metric="legal.quality.rougeL"'):]
    assert re.match(r'data-metric="legal\.quality\.rougeL"><td class="metric">rougeL</td>\s*'
                    r'<td class="num">0\.41</td><td class="num">0\.41</td><td class="num">0\.51</td>', row), row[:200]
    assert "healthcare.quality" not in legal and 'id="quantization-legal"' in legal
    shared = html[html.index('<section id="shared">'):]
    assert "bm25 (paraphrased questions)" in shared and "0.5758" in shared  # reranker.json, all of it
    assert re.search(r"<td>legal</td><td class=\"num\">0\.97</td>\s*<td class=\"num\">1</td>"
                     r"<td class=\"num\">97</td><td class=\"num\">2</td>", shared)  # routing.json's confusion
    assert "<dt>chunks</dt><dd>417</dd>" in shared  # index.json


def test_each_domain_has_its_own_legible_loss_chart(dashboard, repo):
    rows = {r.name: r.rev for r in list_experiments(repo)}
    html = httpx.get(f"{dashboard.url}/ui/experiments", params=[("compare", rows["main"]),
                                                                 ("compare", rows["lora-r8"])], timeout=60).text
    for domain in DOMAINS:
        chart = section(html, domain)
        chart = chart[chart.index("<svg"):chart.index("</svg>")]
        colours = strokes(chart)
        assert len(colours) == 4 and len(set(colours)) == 4, colours  # 2 experiments x train/eval
        assert chart.count('stroke-dasharray="7 4"') == 4  # eval dashed: in the plot and in the legend
        legend = re.findall(r'<g class="legend-item" data-label="([^"]+)">', chart)
        assert legend == ["main: train loss", "main: eval loss", "lora-r8: train loss", "lora-r8: eval loss"]
        assert " style=" not in chart and "<style" not in chart  # the page's CSP allows no inline styles
    comparison = html[html.index('id="comparison"'):html.index('id="param-diff"')]
    assert re.findall(r'<table class="comparison" data-domain="(\w+)">', comparison) == sorted(DOMAINS)
    assert re.search(r"<td>quality\.rougeL</td><td class=\"num\">0\.4</td>\s*<td class=\"num\">0\.5</td>",
                     comparison)


def test_chart_escapes_labels_and_draws_round_ticks():
    svg = line_chart([Line('<img src=x onerror="alert(1)">: train loss', [(1, 2.0), (2, 1.5)]),
                      Line("b: eval loss", [(1, 2.2), (2, 1.9)], dashed=True)])
    assert "<img" not in svg and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in svg
    assert len(set(strokes(svg))) == 2
    assert nice_ticks(1.43, 2.61) == [1.25, 1.5, 1.75, 2.0, 2.25, 2.5, 2.75]
    assert nice_ticks(10, 40) == [10, 20, 30, 40] and nice_ticks(2.0, 2.0)[0] < 2.0 < nice_ticks(2.0, 2.0)[-1]
    assert "no training curves" in line_chart([])


def test_page_fits_a_1280_px_window_and_curves_are_told_apart(dashboard, repo, tmp_path):
    rows = {r.name: r.rev for r in list_experiments(repo)}
    with offline_page(width=1280, height=800) as (page, log):
        page.goto(f"{dashboard.url}/ui/experiments")
        assert page.locator("section.domain").count() == 3
        page.locator("#experiments tr", has_text="main").locator("input[type=checkbox]").check()
        page.locator("#experiments tr", has_text="lora-r8").locator("input[type=checkbox]").check()
        page.click("#compare-button")
        page.wait_for_selector("#comparison")
        assert rows["lora-r8"] in page.url
        # no horizontal scroll of the page: wide tables scroll inside their own box
        assert page.evaluate("document.documentElement.scrollWidth") <= 1280
        for domain in DOMAINS:
            chart = page.locator(f"#domain-{domain} svg.chart")
            assert chart.bounding_box()["width"] > 500
            lines = chart.locator("g.series path.line")
            colours = [lines.nth(i).get_attribute("stroke") for i in range(lines.count())]
            assert len(colours) == 4 and len(set(colours)) == 4, colours
            drawn = [lines.nth(i).evaluate("p => getComputedStyle(p).stroke") for i in range(lines.count())]
            assert len(set(drawn)) == 4, drawn  # the colours reach the screen (nothing overrides them)
            legend = chart.locator("g.legend-item line")
            assert [legend.nth(i).get_attribute("stroke") for i in range(legend.count())] == colours
            assert chart.locator("g.legend-item text").all_text_contents()[0] == "main: train loss"
        screenshot(page, "ui-experiments-domains.png", tmp_path)
        log.assert_clean()
