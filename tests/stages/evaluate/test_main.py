"""The evaluate stage end to end on tiny real models: HF (tiny random Llama) and GGUF (embedded SmolLM2)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest
import torch

from stages.errors import StageError
from stages.evaluate.main import main
from stages.fileio import read_jsonl, write_jsonl
from stages.prepare.records import make_record

SYSTEM = "You are a finance assistant."
STABLE_KEYS = ("rouge1", "rouge2", "rougeL", "bleu", "bleu_precision_1", "bleu_precision_4", "perplexity",
               "exact_match", "token_accuracy", "f1", "precision", "recall", "semantic_similarity",
               "numeric_accuracy", "tokens_per_second", "latency_p50_s", "latency_p95_s", "speed_completion_tokens",
               "n_examples")
QUALITY_KEYS = ("rouge1", "rougeL", "bleu", "perplexity", "f1", "exact_match", "token_accuracy", "stop_rate",
                "repetition_rate")


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)


def _records() -> list[dict]:
    return [
        make_record("finance", "What is compound interest?", "Interest earned on principal and past interest.",
                    "synthetic", system_prompt=SYSTEM),
        make_record("finance", "What does 1000 grow to at 5% for 2 years, compounded yearly?",
                    "It grows to 1,102.50.", "synthetic", system_prompt=SYSTEM, answer_type="numeric",
                    numeric_answer=1102.5),
        make_record("healthcare", "What is hypertension?", "High blood pressure.", "synthetic", system_prompt=SYSTEM),
        make_record("healthcare", "Who treats diabetes?", "An endocrinologist.", "synthetic"),
    ]


def _cfg(cfg_factory, tmp_path: Path, merged: Path, base: Path, *extra: str):
    write_jsonl(tmp_path / "data" / "finance" / "test.jsonl", _records())
    # Answers stop at 6 tokens; the timed requests decode 8: speed must not depend on how long answers are.
    return cfg_factory("domain=finance", f"paths.processed={tmp_path / 'data'}", f"paths.merged={merged}",
                       f"paths.base_model={base}", f"paths.metrics={tmp_path / 'metrics'}", "threads=1",
                       "eval.max_new_tokens=6", "eval.bootstrap_samples=100", "eval.warmup_examples=1",
                       "eval.speed_examples=2", "eval.speed_tokens=8", *extra)


def _reference_nll(model_dir: Path, messages: list[dict], reference: str) -> tuple[float, int]:
    """Independent check of the stage's perplexity input: plain transformers, no engine. The answer is scored
    closed by its end-of-turn token (ChatML's `<|im_end|>` here), as training's loss counts it."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    prompt = tok(tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True),
                 add_special_tokens=False)["input_ids"]
    target = tok(reference, add_special_tokens=False)["input_ids"] + [tok.convert_tokens_to_ids("<|im_end|>")]
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([prompt + target])).logits[0, len(prompt) - 1:-1]
    return float(torch.nn.functional.cross_entropy(logits, torch.tensor(target), reduction="sum")), len(target)


def test_hf_engine_end_to_end(cfg_factory, tmp_path, tiny_model_dir):
    # base == fine-tuned folder: greedy decoding must then give identical predictions and zero deltas
    cfg = _cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir, "eval.batch_size=3")
    returned = main(cfg)
    metrics = tmp_path / "metrics"
    eval_json = json.loads((metrics / "eval.json").read_text())
    assert eval_json == returned
    for key in STABLE_KEYS:
        assert key in eval_json, key
    for key in ("rougeL", "bleu", "perplexity", "f1", "semantic_similarity"):
        assert eval_json[f"{key}_ci_low"] <= eval_json[key] <= eval_json[f"{key}_ci_high"]
    assert eval_json["n_examples"] == 4 and eval_json["n_numeric"] == 1
    # speed: two requests alone, each decoding exactly eval.speed_tokens (not max_new_tokens) new tokens
    assert eval_json["speed_completion_tokens"] == 8
    assert eval_json["tokens_per_second"] > 0 and eval_json["latency_p95_s"] >= eval_json["latency_p50_s"] > 0

    predictions = read_jsonl(metrics / "eval" / "predictions.jsonl")
    assert [p["model"] for p in predictions] == ["finetuned"] * 4 + ["base"] * 4
    ft, base = predictions[:4], predictions[4:]
    assert [p["prediction"] for p in ft] == [p["prediction"] for p in base]
    assert [p["reference"] for p in ft] == [r["messages"][-1]["content"] for r in _records()]
    assert all(p["prompt"].endswith("<|im_start|>assistant\n") and p["reference"] not in p["prompt"] for p in ft)
    assert "numeric_correct" in ft[1]["scores"] and "numeric_correct" not in ft[0]["scores"]
    assert eval_json["rougeL"] == pytest.approx(sum(p["scores"]["rougeL"] for p in ft) / 4)
    # stop rate: the share of answers that ended on the end of turn before max_new_tokens
    assert eval_json["stop_rate"] == pytest.approx(sum(p["finish_reason"] == "stop" for p in ft) / 4)
    assert eval_json["repetition_rate"] == pytest.approx(sum(p["scores"]["repetition_rate"] for p in ft) / 4)

    # corpus perplexity = exp(total NLL / total tokens), recomputed here with plain transformers
    nll, ntok = zip(*(_reference_nll(tiny_model_dir, r["messages"][:-1], r["messages"][-1]["content"])
                      for r in _records()), strict=True)
    assert eval_json["perplexity"] == pytest.approx(math.exp(sum(nll) / sum(ntok)), rel=1e-4)

    comparison = json.loads((metrics / "model_comparison.json").read_text())
    assert comparison["splits"] == ["test"] and set(comparison["models"]) == {"finetuned", "base"}
    assert comparison["metrics"]["test"]["finetuned"]["rougeL"] == eval_json["rougeL"]
    deltas = comparison["deltas"]["test"]["finetuned_vs_base"]
    for key in QUALITY_KEYS:
        assert deltas[key]["delta"] == pytest.approx(0.0, abs=1e-9), key
    assert deltas["latency_p50_s"]["finetuned"] == eval_json["latency_p50_s"]

    domains = json.loads((metrics / "domain_evaluation.json").read_text())
    assert set(domains) == {"test"} and set(domains["test"]) == {"finetuned", "base"}
    assert set(domains["test"]["finetuned"]) == {"finance", "healthcare"}
    assert domains["test"]["finetuned"]["finance"]["n_examples"] == 2
    assert "numeric_accuracy" in domains["test"]["finetuned"]["finance"]
    assert "numeric_accuracy" not in domains["test"]["finetuned"]["healthcare"]


def _validation_records() -> list[dict]:
    return [
        make_record("finance", "What is a dividend?", "A share of profit paid to shareholders.", "synthetic",
                    system_prompt=SYSTEM),
        make_record("finance", "What is inflation?", "A general rise in prices over time.", "synthetic",
                    system_prompt=SYSTEM),
        make_record("legal", "What is a tort?", "A civil wrong that causes harm.", "synthetic", system_prompt=SYSTEM),
    ]


def test_every_delta_compares_models_on_the_same_split(cfg_factory, tmp_path, tiny_model_dir):
    # base == fine-tuned folder: on any one split the two models answer and score identically, so every quality
    # delta is zero. Comparing the fine-tuned model on test with the base on validation (the old
    # `finetuned_vs_base@validation`) gives the perplexity gap between the splits instead.
    write_jsonl(tmp_path / "data" / "finance" / "validation.jsonl", _validation_records())
    cfg = _cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir, "eval.splits=[test,validation]",
               "eval.speed_examples=1", "eval.semantic_similarity=false", "eval.bootstrap_samples=20")
    eval_json = main(cfg)
    comparison = json.loads((tmp_path / "metrics" / "model_comparison.json").read_text())
    assert comparison["splits"] == ["test", "validation"]
    metrics = comparison["metrics"]
    assert metrics["test"]["finetuned"]["n_examples"] == metrics["test"]["base"]["n_examples"] == 4
    assert metrics["validation"]["finetuned"]["n_examples"] == metrics["validation"]["base"]["n_examples"] == 3
    # the splits really differ: a cross-split pairing could not give zero
    assert abs(metrics["test"]["finetuned"]["perplexity"] - metrics["validation"]["base"]["perplexity"]) > 1.0
    for split in ("test", "validation"):
        assert set(comparison["deltas"][split]) == {"finetuned_vs_base"}, split
        deltas = comparison["deltas"][split]["finetuned_vs_base"]
        for key in QUALITY_KEYS:
            assert deltas[key]["delta"] == pytest.approx(0.0, abs=1e-9), (split, key)
            assert deltas[key]["finetuned"] == metrics[split]["finetuned"][key], (split, key)
            assert deltas[key]["base"] == metrics[split]["base"][key], (split, key)
        # identical answers: the paired interval of the per-question difference is exactly [0, 0]
        assert deltas["rougeL"]["delta_ci_low"] == deltas["rougeL"]["delta_ci_high"] == pytest.approx(0.0, abs=1e-12)
    # speed is measured once per model, on the first split's prompts: compared there only
    assert "latency_p50_s" in comparison["deltas"]["test"]["finetuned_vs_base"]
    assert "latency_p50_s" not in metrics["validation"]["finetuned"]
    assert eval_json["validation_perplexity"] == metrics["validation"]["finetuned"]["perplexity"]
    assert eval_json["n_examples"] == 4 and eval_json["validation_n_examples"] == 3
    assert "validation_latency_p50_s" not in eval_json
    domains = json.loads((tmp_path / "metrics" / "domain_evaluation.json").read_text())
    assert set(domains["validation"]["base"]) == {"finance", "legal"}
    predictions = read_jsonl(tmp_path / "metrics" / "eval" / "predictions.jsonl")
    assert sorted({(p["model"], p["split"]) for p in predictions}) == [
        ("base", "test"), ("base", "validation"), ("finetuned", "test"), ("finetuned", "validation")]


def test_bad_eval_settings_are_one_line_errors(cfg_factory, tmp_path, tiny_model_dir):
    for override, message in (("eval.speed_tokens=0", r"eval.speed_tokens=0: must be >= 1"),
                              ("eval.speed_examples=-1", r"eval.speed_examples=-1: must be >= 0"),
                              ("eval.splits=[test,test]", r"eval.splits=\['test', 'test'\]: name each split once")):
        with pytest.raises(StageError, match=message) as err:
            main(_cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir, override))
        assert "\n" not in str(err.value)
    assert not (tmp_path / "metrics").exists()


def test_gguf_engine_end_to_end(cfg_factory, tmp_path, tiny_model_dir, smollm2_gguf):
    cfg = _cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir, "eval.compare_base=false",
               "eval.max_examples=2", "eval.semantic_similarity=false", f"eval.gguf_files=[{smollm2_gguf}]")
    main(cfg)
    metrics = tmp_path / "metrics"
    comparison = json.loads((metrics / "model_comparison.json").read_text())
    label = f"gguf:{smollm2_gguf.stem}"
    assert comparison["models"][label]["engine"] == "gguf"
    gguf = comparison["metrics"]["test"][label]
    assert gguf["n_examples"] == 2
    # a real 135M instruct model on plain English answers: far below the tiny random model's ~vocab-size ppl
    assert 1.0 < gguf["perplexity"] < 500 < comparison["metrics"]["test"]["finetuned"]["perplexity"]
    deltas = comparison["deltas"]["test"][f"finetuned_vs_{label}"]
    assert deltas["perplexity"]["finetuned_better"] is False
    # two different models on the same questions: the paired interval brackets the delta of the means
    rouge = deltas["rougeL"]
    assert rouge["delta_ci_low"] <= rouge["delta"] + 1e-12 and rouge["delta"] <= rouge["delta_ci_high"] + 1e-12
    # the GGUF engine is timed like the HF one: requests alone, at most eval.speed_tokens new tokens each
    assert gguf["latency_p95_s"] >= gguf["latency_p50_s"] > 0 and 0 < gguf["speed_completion_tokens"] <= 8
    predictions = [p for p in read_jsonl(metrics / "eval" / "predictions.jsonl") if p["model"] == label]
    assert len(predictions) == 2 and all(p["prediction"].strip() for p in predictions)
    assert all(0 < p["completion_tokens"] <= 6 for p in predictions)
    assert "semantic_similarity" not in json.loads((metrics / "eval.json").read_text())


def _snapshot(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def test_crash_mid_evaluation_leaves_previous_outputs(cfg_factory, tmp_path, tiny_model_dir):
    main(_cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir, "eval.compare_base=false",
              "eval.semantic_similarity=false"))
    before = _snapshot(tmp_path / "metrics")
    assert {"eval.json", "model_comparison.json", "domain_evaluation.json", "eval/predictions.jsonl"} <= set(before)

    # the second model is corrupt: the fine-tuned model is evaluated, then loading the base fails
    corrupt = tmp_path / "corrupt_base"
    shutil.copytree(tiny_model_dir, corrupt)
    weights = corrupt / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])
    with pytest.raises(StageError, match="corrupt_base"):
        main(_cfg(cfg_factory, tmp_path, tiny_model_dir, corrupt, "eval.compare_base=true",
                  "eval.semantic_similarity=false", "eval.max_new_tokens=3"))
    assert _snapshot(tmp_path / "metrics") == before
    assert not [p for p in (tmp_path / "metrics").rglob("*") if p.name.endswith(".tmp")]


def test_bad_records_name_file_line_and_field(cfg_factory, tmp_path, tiny_model_dir):
    cfg = _cfg(cfg_factory, tmp_path, tiny_model_dir, tiny_model_dir)
    test_file = tmp_path / "data" / "finance" / "test.jsonl"
    records = _records()
    records[1]["messages"] = records[1]["messages"][:-1]          # no assistant turn
    write_jsonl(test_file, records)
    with pytest.raises(StageError, match=r"test\.jsonl:2: field 'messages'"):
        main(cfg)
    records = _records()
    records[1]["numeric_answer"] = "about 1100"
    write_jsonl(test_file, records)
    with pytest.raises(StageError, match=r"test\.jsonl:2: field 'numeric_answer'"):
        main(cfg)
    assert not (tmp_path / "metrics").exists()


def test_generate_timed_batches_by_length_and_keeps_input_order(tiny_model_dir):
    from stages.evaluate.runner import generate_timed
    from stages.inference import SamplingParams, load_engine

    engine = load_engine("hf", tiny_model_dir, threads=1, batch_size=8)
    prompts = ["one two three four five six seven eight", "hi", "a b c d", "x y", "lorem ipsum dolor sit amet"]
    gens, speed = generate_timed(engine, prompts, SamplingParams(max_new_tokens=3), batch_size=2)
    # prompt_tokens identifies each prompt: results must come back in input order despite length sorting
    assert [g.prompt_tokens for g in gens] == [engine.count_tokens(p) for p in prompts]
    assert len({engine.count_tokens(p) for p in prompts}) == len(prompts)
    assert speed["examples_per_second"] > 0 and speed["completion_tokens"] == sum(g.completion_tokens for g in gens)
