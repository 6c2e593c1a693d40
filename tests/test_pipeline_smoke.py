"""Full-pipeline smoke test: every DVC stage on a tiny random model, two domains, in a real temp git+DVC repo.

Shared: base, index, quantize (the base as GGUF), train_reranker. Per domain (foreach): prepare, train, evaluate,
adapter (the domain's LoRA adapter as GGUF), retrieval, grounded, lmeval, headline. Then: up to date; the server answers
each domain with its own adapter, as the merged model does; an experiment with `-S train.lora.r=8` reruns the
domain's training and what follows, not prepare, quantize, the reranker or the other domain, and `dvc metrics
diff` shows it.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from tests.pipeline_repo import make_pipeline_repo, run

DOMAINS = ("healthcare", "legal")
SMOKE_CONF = """
data:
  num_samples: 60
  test_questions: 10
  held_out_facts: 0.08            # a few facts per kind: retrieval@, grounded@ and the reranker's benchmark stay quick
  validation_held_out_facts: 0.08
train:
  max_steps: 4
  batch_size: 4
  logging_steps: 1
  eval_steps: 2
  save_steps: 2
eval:
  max_examples: 4
  max_new_tokens: 8
  bootstrap_samples: 50
  warmup_examples: 1
  lmeval:
    mc_limit: 6
    gen_limit: 3
    max_gen_toks: 8
quantize:
  types: [q8_0]
  benchmark:
    max_examples: 3
    decode_tokens: 8
reranker:
  hard_negatives: 2
  random_negatives: 1
  epochs: 1
  batch_size: 16
  eval_candidates: 8
serve:
  model: models/gguf/model-q8_0.gguf   # the only type quantized here; grounded@<domain> runs what is served
"""


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = make_pipeline_repo(tmp_path_factory.mktemp("smoke") / "repo", SMOKE_CONF, domains=DOMAINS)
    run(["dvc", "repro"], repo, timeout=1200)
    run("git add -A && git commit -qm 'pipeline run'", repo)
    return repo


def test_every_stage_publishes_its_outputs(repo):
    shared = ("models/base/model.safetensors", "models/gguf/model-q8_0.gguf", "models/gguf/manifest.json",
              "models/reranker/README.md", "models/index/chunks.jsonl", "metrics/index.json", "metrics/quantize.json",
              "metrics/reranker.json", "metrics/routing.json")
    per_domain = ("data/processed/{d}/test.jsonl", "data/processed/{d}/test_facts.jsonl",
                  "data/processed/{d}/validation_facts.jsonl", "models/adapter/{d}/adapter_config.json",
                  "models/merged/{d}/model.safetensors", "models/merged/{d}/README.md",
                  "models/adapters/{d}/adapter.gguf", "models/adapters/{d}/manifest.json",
                  "metrics/{d}/eval/predictions.jsonl", "metrics/{d}/retrieval.json", "metrics/{d}/grounded.json",
                  "metrics/{d}/lmeval.json",
                  "metrics/{d}/eval.json", "metrics/{d}/quantize.json", "metrics/{d}/train.json",
                  "metrics/{d}/model_comparison.json")
    for path in (*shared, *(p.format(d=d) for p in per_domain for d in DOMAINS)):
        assert (repo / path).exists(), path
    # Only the headlines are declared as DVC metrics, one per domain side by side: a readable `dvc exp show`.
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    declared = metrics[""]["data"]
    assert sorted(declared) == [f"metrics/{d}/headline.json" for d in sorted(DOMAINS)], list(declared)
    for domain in DOMAINS:
        headline = declared[f"metrics/{domain}/headline.json"]["data"]
        assert sum(len(section) for section in headline.values()) <= 20, headline
        for section, key in (("quality", "rougeL"), ("quality", "perplexity"), ("quality", "stop_rate"),
                             ("training", "eval_loss"), ("gguf", "adapter_q8_0_dppl_pct"),
                             ("lm_eval", "served_mc_accuracy"), ("lm_eval", "served_vs_merged_points"),
                             ("rerank", "mrr_at_10"),
                             ("retrieval", "hybrid_mrr_at_10"), ("grounded", "rougeL_with_retrieval")):
            assert isinstance(headline[section][key], int | float), (domain, section, key)
    routing = json.loads((repo / "metrics/routing.json").read_text())
    assert sorted(routing["per_domain"]) == sorted(DOMAINS) and routing["questions"] > 10
    assert 0 <= routing["accuracy"] <= 1 and sum(routing["confusion"]["legal"].values()) > 0
    # The adapter runs on the published base: its manifest names that file and its sha256.
    from stages.manifest import sha256_file

    manifest = json.loads((repo / "models/adapters/legal/manifest.json").read_text())
    assert manifest["base"] == {"file": "model-q8_0.gguf", "sha256": sha256_file(repo / "models/gguf/model-q8_0.gguf")}
    assert manifest["adapter"]["sha256"] == sha256_file(repo / "models/adapters/legal/adapter.gguf")
    status = run(["dvc", "status"], repo).stdout
    assert "up to date" in status


def test_one_server_answers_each_domain_with_its_adapter_like_the_merged_model(repo):
    """`domain-llm serve` on the published base finds both adapters; each domain's greedy answers are its
    adapter's (they differ between domains) and equal those of the merged model converted whole."""
    from stages.config import compose
    from stages.inference import SamplingParams, load_engine
    from stages.quantize.convert import convert_hf_to_gguf
    from tests.serving.conftest import start_server_process

    question = "What is hypertension?"
    server = start_server_process("serve.model=" + str(repo / "models/gguf/model-q8_0.gguf"),
                                  "serve.adapter_dir=" + str(repo / "models/adapters"), "serve.adapters=null",
                                  "serve.index=null",
                                  "serve.rerank=false", "serve.ui=false")
    try:
        ids = [m["id"] for m in httpx.get(f"{server.url}/v1/models", timeout=30).json()["data"]]
        assert ids == ["model-q8_0", "domain-llm-healthcare", "domain-llm-legal"]
        answers = {}
        for domain in DOMAINS:
            body = {"model": f"domain-llm-{domain}", "max_tokens": 12, "temperature": 0,
                    "messages": [{"role": "user", "content": question}]}
            response = httpx.post(f"{server.url}/v1/chat/completions", json=body, timeout=60)
            assert response.status_code == 200 and response.headers["x-domain-llm-domain"] == domain
            answers[domain] = response.json()["choices"][0]["message"]["content"]
    finally:
        server.stop()
    likelihood = {}
    served_penalty = float(compose([]).serve.repeat_penalty)  # the server's default for requests that set none
    for domain in DOMAINS:
        merged = convert_hf_to_gguf(repo / f"models/merged/{domain}", repo / f"merged-{domain}.gguf", outtype="f16")
        system = json.loads((repo / f"models/adapters/{domain}/manifest.json").read_text())["system_prompt"]
        engine = load_engine("gguf", merged, threads=1, n_ctx=256)
        try:
            [expected] = engine.chat([[{"role": "system", "content": system}, {"role": "user", "content": question}]],
                                     SamplingParams(max_new_tokens=12, repeat_penalty=served_penalty))
            likelihood[domain] = engine.score(question, " It is high blood pressure.")[0]
        finally:
            engine.close()
            merged.unlink()
        # q8_0 base + f16 adapter vs the merged model in f16: rounding apart, the same first words.
        assert answers[domain][:10] == expected.text[:10], (domain, answers[domain], expected.text)
    # Four steps on random weights may leave both answers the same few tokens; the two domains' models differ.
    assert abs(likelihood["healthcare"] - likelihood["legal"]) > 1e-3, likelihood


def test_feedback_reruns_align_and_nothing_after_it_while_alignment_is_off(repo):
    """A 👍/👎 line is a changed dependency of align@<d>: it reruns (cheap while align.method is none) and, its
    output unchanged, nothing downstream does."""
    feedback = repo / "data/feedback/legal.jsonl"
    feedback.write_text(json.dumps({"question": "What is a tort?", "answer": "A civil wrong.", "label": True,
                                    "domain": "legal", "system": None, "adapter_sha256": None, "model": "m",
                                    "created": "2026-12-05T00:00:00Z"}) + "\n")
    try:
        status = run(["dvc", "status"], repo).stdout
        assert "align@legal" in status and "data/feedback" in status and "align@healthcare" in status, status
        out = run(["dvc", "repro"], repo, timeout=600).stdout
        assert "Running stage 'align@legal'" in out
        for stage in ("train@legal", "evaluate@legal", "adapter@legal", "grounded@legal"):
            assert f"Running stage '{stage}'" not in out, stage
    finally:
        feedback.unlink()
        run(["dvc", "repro"], repo, timeout=600)
    assert json.loads((repo / "models/aligned/legal/alignment.json").read_text())["method"] == "none"


def test_forced_rerun_resumes_and_keeps_the_curves(repo):
    curve = repo / "metrics/legal/train_live/plots/metrics/train/loss.tsv"
    before = curve.read_text()
    out = run(["dvc", "repro", "--force", "--single-item", "train@legal"], repo, timeout=600).stdout
    assert "Running stage 'train@legal'" in out and "train@healthcare" not in out
    train = json.loads((repo / "metrics/legal/train.json").read_text())
    assert train["resumed_from_step"] == train["steps"] == 4
    assert curve.read_text() == before and len(before.splitlines()) >= 3  # header + a row per logged step


def test_experiment_reruns_train_and_downstream_only(repo):
    # One domain's headline asked for: its training and what follows rerun, the shared stages and the other
    # domain do not (both domains took twice as long and showed nothing more).
    out = run(["dvc", "exp", "run", "headline@legal", "-S", "train.lora.r=8"], repo, timeout=1200).stdout
    for stage in ("train", "evaluate", "adapter", "grounded"):
        assert f"Running stage '{stage}@legal'" in out, stage
    for stage in ("base", "prepare@legal", "quantize", "train_reranker", "train@healthcare", "adapter@healthcare"):
        assert f"Running stage '{stage}'" not in out, stage
    diff = json.loads(run(["dvc", "metrics", "diff", "--json"], repo).stdout)
    changed = diff.get("metrics/legal/headline.json", {})
    assert {"quality.rougeL", "quality.perplexity", "training.eval_loss"} & set(changed), diff
    detail = run(["dvc", "metrics", "diff", "--json", "--targets", "metrics/legal/eval.json"], repo).stdout
    assert "rougeL_ci_low" in detail or "perplexity_ci_low" in detail, detail[:2000]
    params = run(["dvc", "params", "diff", "--json"], repo).stdout
    assert "train.lora.r" in params


def test_experiment_sets_a_quantization_recipe(repo):
    # A dict-valued -S reaches the quantize stage through DVC's Hydra composition.
    # Only the quantize stage is asked for (its downstream rerun is test_experiment_reruns_train_and_downstream_only's).
    out = run(["dvc", "exp", "run", "quantize", "-S", "quantize.tensor_types={q8_0: {ffn_down: q4_0}}"], repo,
              timeout=600).stdout
    assert "Running stage 'quantize'" in out
    files = json.loads((repo / "models/gguf/manifest.json").read_text())["files"]
    q8 = next(f for f in files if f["type"] == "q8_0")
    assert q8["tensor_type_overrides"] == {"ffn_down": "q4_0"} and q8["tensor_types"]["Q4_0"] == 2
    # the later tests start from the run's state (an experiment's params and outputs stay in the workspace)
    run("git checkout -- . && dvc checkout --force", repo, timeout=600)


@pytest.mark.slow
def test_alignment_on_reruns_align_and_what_uses_its_adapter(repo):
    """`-S align.method=dpo`: align@legal tunes the SFT adapter; evaluate@, adapter@ (so grounded@) and lmeval@
    take it; the shared stages and the other domain do not rerun."""
    manifest = repo / "models/adapters/legal/manifest.json"
    sft_adapter = json.loads(manifest.read_text())["adapter"]["sha256"]
    out = run(["dvc", "exp", "run", "headline@legal", "-S", "align.method=dpo", "-S", "align.questions=4",
               "-S", "align.samples_per_question=1", "-S", "align.max_new_tokens=8", "-S", "align.max_steps=2",
               "-S", "align.batch_size=2"], repo, timeout=1200).stdout
    for stage in ("align@legal", "evaluate@legal", "adapter@legal", "grounded@legal", "lmeval@legal"):
        assert f"Running stage '{stage}'" in out, stage
    # (train@legal may rerun here: the experiments before this one rewrote its persisted checkpoints)
    for stage in ("quantize", "prepare@legal", "train_reranker", "align@healthcare"):
        assert f"Running stage '{stage}'" not in out, stage
    align = json.loads((repo / "metrics/legal/align.json").read_text())
    assert align["method"] == "dpo" and align["steps"] == 2
    assert json.loads(manifest.read_text())["adapter"]["sha256"] != sft_adapter  # the server gets the tuned one
    run("git checkout -- . && dvc checkout --force", repo, timeout=600)  # the later tests start from the run's state


def test_a_qwen2_model_goes_through_the_whole_pipeline(repo):
    """Another family's architecture (tiny random Qwen2: q/k/v biases, NEOX rope) from base to a served GGUF."""
    from stages.inference import SamplingParams, load_engine

    # 60 steps at a high rate on the plain question/answer rows (no grounded prompts): random weights learn to end
    # their turn (eval stop_rate, below), not yet the answers. One domain's path, from base to its served adapter.
    out = run(["dvc", "exp", "run", "evaluate@legal", "adapter@legal", "-S", "model.family=qwen2",
               "-S", "train.max_steps=60", "-S", "train.lr=5e-3", "-S", "prepare.grounded.share=0"], repo,
              timeout=1200).stdout
    for stage in ("base", "prepare@legal", "train@legal", "evaluate@legal", "quantize", "adapter@legal"):
        assert f"Running stage '{stage}'" in out, stage
    assert "Running stage 'train@healthcare'" not in out  # only what the two targets need
    assert json.loads((repo / "models/base/config.json").read_text())["architectures"] == ["Qwen2ForCausalLM"]
    engine = load_engine("gguf", repo / "models/gguf/model-q8_0.gguf", threads=1, n_ctx=256)
    try:
        assert engine.info()["architecture"] == "qwen2"
        [reply] = engine.chat([[{"role": "user", "content": "What is hypertension?"}]],
                              SamplingParams(max_new_tokens=32))
        # The served q8_0 file generates through the qwen2 chat contract. Whether it also stops is not asserted:
        # after 60 steps on random weights (loss 10.8 -> 10.6) the end-of-turn margin is within quantization
        # noise (the HF model stopped on every eval answer while this file looped on ","). That a fine-tuned
        # qwen2 GGUF stops is tested in tests/stages/quantize/test_families.py.
        assert reply.completion_tokens > 0 and reply.finish_reason in ("stop", "length"), reply
        assert engine.contract.stop_strings[0] == "<|im_end|>"
    finally:
        engine.close()
    assert json.loads((repo / "metrics/legal/eval.json").read_text())["stop_rate"] > 0


def test_exp_show_is_readable_after_the_experiments(repo):
    """After the experiments above, a row is the changed params plus at most 20 headline metrics per domain (it
    was 351 metric and 150 param columns when every metrics file was declared)."""
    header = run(["dvc", "exp", "show", "--only-changed", "--csv"], repo).stdout.splitlines()[0].split(",")
    # with several metrics files a column is "<file>:<section>.<name>"
    metrics = [c for c in header if c.split(":")[-1].split(".")[0] in
               ("quality", "training", "gguf", "rerank", "retrieval", "grounded")]
    print(f"\ndvc exp show --only-changed: {len(header)} columns, {len(metrics)} of them metrics: {header}")
    assert 3 <= len(metrics) <= 20 * len(DOMAINS), header  # --only-changed: the headline metrics that moved
    assert any(c.startswith("metrics/legal/headline.json:") for c in metrics), header
    assert len(header) <= 20 + 20 * len(DOMAINS), f"{len(header)} columns: {header}"
    assert "train.lora.r" in header and "model.family" in header  # the params the experiments changed


def test_dashboard_shows_the_pipeline_and_its_experiments(repo, tmp_path):
    """The web UI's experiments page on this real pipeline repo (its commits and the experiments above), in
    headless Chromium with the network cut off: the table, a loss curve, a two-row comparison, the tables."""
    from serving.settings import ServeSettings
    from serving.ui.main import create_dashboard_app
    from tests.browser import chromium_path, offline_page, wait_until
    from tests.serving.conftest import serve_in_thread

    chromium_path()  # skips with the reason when no browser is installed
    server = serve_in_thread(create_dashboard_app(ServeSettings(), repo), healthy=False)
    try:
        with offline_page() as (page, log):
            page.goto(f"{server.url}/ui/experiments")
            rows = page.locator("#experiments tbody tr")
            kinds = rows.locator("td:nth-child(3)").all_inner_texts()
            assert kinds.count("experiment") >= 2 and "commit" in kinds, kinds
            # one section per domain: its metrics table (a row per metric) and its loss curves
            assert page.locator("#metrics-legal tr[data-metric='legal.quality.rougeL']").count() == 1
            wait_until(lambda: page.locator("#loss-legal svg.chart g.series").count() >= 1)
            assert page.evaluate("document.documentElement.scrollWidth") <= 1280
            rows.nth(1).locator("input").check()            # the commit with the pipeline run
            rows.filter(has_text="experiment").first.locator("input").check()
            page.click("#compare-button")
            legal = page.locator("#comparison table[data-domain=legal] tbody td:first-child").all_inner_texts()
            healthcare = page.locator("#comparison table[data-domain=healthcare] tbody td:first-child")
            assert "quality.rougeL" in legal, legal
            assert "training.eval_loss" in healthcare.all_inner_texts()
            assert page.locator("#param-diff tbody tr").count() >= 1
            entries = page.locator("#quantization tbody td:first-child").all_inner_texts()
            assert "q8_0" in entries, entries
            assert "adapter_q8_0" in page.locator("#quantization-legal tbody td:first-child").all_inner_texts()
            rankers = page.locator("#reranker tbody td:first-child").all_inner_texts()
            assert {"bm25", "biencoder", "trained"} <= set(rankers), rankers
            assert page.locator("details.doc summary", has_text="models/merged/legal/README.md").count() == 1
            log.assert_clean()
    finally:
        server.stop()
