"""`domain-llm lmeval` (the `lmeval@<domain>` stages): lm-evaluation-harness on what users are served -- the
quantized base GGUF plus the domain's LoRA adapter, through our own API -- and on the HF merged model
in-process, with the same tasks -> metrics/<domain>/lmeval.json.

    domain-llm lmeval --params params.yaml --domain legal     # as dvc.yaml runs lmeval@legal
    domain-llm lmeval --domain legal eval.lmeval.gen_limit=10

Two tasks, written for lm-eval from the domain's data:
- `<domain>_facts_mc` (multiple choice, loglikelihood): each held-out fact's question (the test_facts split:
  facts no training example states) with its answer and up to n_choices - 1 answers of the same field about
  other subjects ("What is the treatment of asthma?": asthma's treatment vs psoriasis' and gout's) as choices.
- `<domain>_test_gen` (generation): the test split's questions, greedy, scored with ROUGE-L here.
Both prompts are the model's chat template over the example's own system and user turns, rendered once here
and given to both models as text, so nothing but the weights differs.

Served: a server of this process (127.0.0.1, a free port) with `serve.model` = eval.lmeval.model and only this
domain's adapter; lm-eval's `local-completions` reads its tokenizer from /tokenize (its `remote` backend) and
scores choices through `echo` + `logprobs`, as it would any vLLM server. Merged: lm-eval's `hf` model on
models/merged/<domain> (fp32, CPU). Headline: multiple-choice accuracy of each, and the served minus merged
difference in points with a paired bootstrap interval; `within_tolerance` says whether |difference| <=
eval.lmeval.tolerance_points.
"""

from __future__ import annotations

import json
import logging
import random
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from omegaconf import DictConfig, OmegaConf

from stages.errors import StageError
from stages.evaluate import metrics as m
from stages.evaluate.stats import bootstrap_mean, bootstrap_statistic
from stages.fileio import read_jsonl, write_json
from stages.inference.adapters import ADAPTER_FILE

log = logging.getLogger(__name__)


def fact_field(record: dict) -> tuple[str, str] | None:
    """(subject, field) of a held-out fact ("healthcare.asthma.treatment" -> ("asthma", "treatment"))."""
    parts = str(record.get("fact_id") or "").split(".")
    return (parts[-2], parts[-1]) if len(parts) >= 3 else None


def prompt_messages(record: dict) -> list[dict]:
    """The example's conversation up to the answer: its system and user turns."""
    messages = record.get("messages") or [{"role": "user", "content": record["instruction"]}]
    return [msg for msg in messages if msg["role"] != "assistant"]


def multiple_choice_docs(questions: list[dict], pool: list[dict], n_choices: int, seed: int, render) -> list[dict]:
    """One doc per question whose field has answers about other subjects in `pool` (every split's records)."""
    by_field: dict[str, dict[str, str]] = defaultdict(dict)  # field -> answer -> subject
    for record in pool:
        found = fact_field(record)
        if found is not None:
            by_field[found[1]].setdefault(record["output"], found[0])
    docs = []
    for record in questions:
        found = fact_field(record)
        if found is None:
            continue
        subject, field = found
        others = sorted(a for a, s in by_field[field].items() if s != subject and a != record["output"])
        rng = random.Random(f"{seed}:{record['id']}")
        distractors = rng.sample(others, min(n_choices - 1, len(others)))
        if not distractors:
            continue
        choices = [record["output"], *distractors]
        rng.shuffle(choices)
        docs.append({"id": record["id"], "prompt": render(prompt_messages(record)), "choices": choices,
                     "answer": choices.index(record["output"])})
    return docs


def write_tasks(folder: Path, domain: str, mc_docs: list[dict], gen_docs: list[dict], stop: list[str],
                max_gen_toks: int) -> tuple[str, str]:
    """lm-eval task configs (YAML) and their data (JSONL) in `folder`; returns the two task names."""
    import yaml

    mc_task, gen_task = f"{domain}_facts_mc", f"{domain}_test_gen"
    for name, docs in ((mc_task, mc_docs), (gen_task, gen_docs)):
        (folder / f"{name}.jsonl").write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))

    def data(name: str) -> dict:
        return {"dataset_path": "json", "dataset_kwargs": {"data_files": {"test": str(folder / f"{name}.jsonl")}},
                "test_split": "test", "doc_to_text": "prompt"}

    # The prompt ends with the template's assistant header: the choice follows it with no delimiter.
    (folder / f"{mc_task}.yaml").write_text(yaml.safe_dump({
        "task": mc_task, **data(mc_task), "output_type": "multiple_choice", "doc_to_choice": "choices",
        "doc_to_target": "answer", "target_delimiter": "", "metric_list": [{"metric": "acc"}]}))
    # repetition_penalty 1.0: the server would otherwise apply serve.repeat_penalty, which the HF run does not.
    (folder / f"{gen_task}.yaml").write_text(yaml.safe_dump({
        "task": gen_task, **data(gen_task), "output_type": "generate_until", "doc_to_target": "reference",
        "target_delimiter": "", "metric_list": [{"metric": "exact_match"}],
        "generation_kwargs": {"until": stop, "max_gen_toks": max_gen_toks, "do_sample": False,
                              "temperature": 0.0, "repetition_penalty": 1.0}}))
    return mc_task, gen_task


def run_harness(model: str, model_args: str, tasks: list[str], folder: Path, batch_size: int) -> dict:
    """lm-eval's samples per task: {task: [sample dicts in doc order]}."""
    import lm_eval
    from lm_eval.tasks import TaskManager

    out = lm_eval.simple_evaluate(model=model, model_args=model_args, tasks=tasks, batch_size=batch_size,
                                  task_manager=TaskManager(include_path=str(folder)), log_samples=True,
                                  random_seed=0, numpy_random_seed=0, torch_random_seed=0, fewshot_random_seed=0)
    return {task: sorted(out["samples"][task], key=lambda s: s["doc_id"]) for task in tasks}


def read_samples(samples: dict, mc_task: str, gen_task: str, gen_docs: list[dict]) -> dict:
    """Per-question correctness of the multiple choice (highest loglikelihood is the answer) and the
    generations' ROUGE-L against the references."""
    correct = []
    for s in samples[mc_task]:
        logliks = [resp[0][0] for resp in s["resps"]]
        correct.append(float(int(np.argmax(logliks)) == int(s["doc"]["answer"])))
    answers = [s["resps"][0][0] for s in samples[gen_task]]
    rouge = [m.rouge(a, d["reference"])["rougeL"] for a, d in zip(answers, gen_docs, strict=True)]
    return {"correct": correct, "rougeL": rouge, "answers": answers}


@contextmanager
def serving(cfg: DictConfig, model: Path, domain: str, adapter: Path) -> Iterator[str]:
    """Our server with `model` and this domain's adapter, on 127.0.0.1 in this process; yields its URL."""
    import socket

    import httpx
    import uvicorn

    from serving.app import create_app

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    served = OmegaConf.merge(cfg, {"serve": {
        "model": str(model), "adapters": {domain: str(adapter)}, "port": port, "host": "127.0.0.1",
        "index": None, "rerank": False, "ui": False, "embeddings": False, "api_key": None,
        "parallel": int(cfg.eval.lmeval.concurrency)}})
    server = uvicorn.Server(uvicorn.Config(create_app(served), host="127.0.0.1", port=port, log_config=None,
                                           access_log=False))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while True:
            try:
                if httpx.get(f"{url}/api/v1/health", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or not thread.is_alive():
                raise StageError(f"the server for {model} + {adapter} did not become healthy; run "
                                 f"`domain-llm serve serve.model={model}` to see why")
            time.sleep(0.2)
        yield url
    finally:
        server.should_exit = True
        thread.join(60)


def main(cfg: DictConfig) -> dict:
    settings = cfg.eval.lmeval
    domain, seed = str(cfg.domain.name), int(cfg.seed)
    data_dir = Path(str(cfg.paths.processed)) / domain
    model = Path(str(settings.model))
    adapter = Path(str(cfg.paths.adapter_gguf)) / ADAPTER_FILE  # paths.* are the domain's own under --domain
    from stages.align.resolve import trained_model

    merged = trained_model(cfg)[1]  # align@'s merged model when it tuned one (the adapter GGUF is made from it)
    for path, what in ((model, "the served base GGUF"), (adapter, f"{domain}'s adapter GGUF"),
                       (merged, f"{domain}'s merged HF model")):
        if not path.exists():
            raise StageError(f"{path}: {what} is missing; run `dvc repro` up to adapter@{domain} first")
    if int(settings.n_choices) < 2:
        raise StageError(f"eval.lmeval.n_choices={settings.n_choices}: at least 2 (the answer and one other)")
    splits = {p.stem: read_jsonl(p) for p in sorted(data_dir.glob("*.jsonl"))}
    for split in (str(settings.mc_split), str(settings.gen_split)):
        if not splits.get(split):
            raise StageError(f"{data_dir}/{split}.jsonl is missing or empty; run prepare@{domain} first")

    from stages.inference.chat import ChatContract
    from stages.inference.gguf import load_llama

    vocab = load_llama(model, vocab_only=True)
    contract = ChatContract.from_gguf(vocab)
    vocab.close()

    def render(messages: list[dict]) -> str:
        return str(contract.render(messages))

    pool = [r for records in splits.values() for r in records]
    mc_docs = multiple_choice_docs(splits[str(settings.mc_split)], pool, int(settings.n_choices), seed, render)
    if settings.mc_limit is not None:
        mc_docs = mc_docs[:int(settings.mc_limit)]
    gen_records = splits[str(settings.gen_split)]
    if settings.gen_limit is not None:
        gen_records = gen_records[:int(settings.gen_limit)]
    gen_docs = [{"id": r["id"], "prompt": render(prompt_messages(r)), "reference": r["output"]} for r in gen_records]
    if not mc_docs:
        raise StageError(f"{data_dir}/{settings.mc_split}.jsonl: no question has a fact_id with a field that other "
                         "subjects share; multiple choice needs held-out facts (data.test_held_out_facts > 0)")
    import torch

    torch.set_num_threads(max(1, int(cfg.threads)))
    started = time.perf_counter()
    results, seconds = {}, {}
    with tempfile.TemporaryDirectory(prefix="lmeval-") as tmp:
        folder = Path(tmp)
        mc_task, gen_task = write_tasks(folder, domain, mc_docs, gen_docs, list(contract.stop_strings),
                                        int(settings.max_gen_toks))
        tasks = [mc_task, gen_task]
        t0 = time.perf_counter()
        with serving(cfg, model, domain, adapter) as url:
            args = (f"base_url={url}/v1/completions,model=domain-llm-{domain},tokenizer_backend=remote,"
                    f"num_concurrent={int(settings.concurrency)},max_retries=1,timeout=600")
            results["served"] = read_samples(run_harness("local-completions", args, tasks, folder, 1),
                                             mc_task, gen_task, gen_docs)
        seconds["served"] = round(time.perf_counter() - t0, 1)
        t0 = time.perf_counter()
        args = f"pretrained={merged},dtype=float32,device=cpu,trust_remote_code=False"
        results["merged"] = read_samples(run_harness("hf", args, tasks, folder, int(settings.hf_batch_size)),
                                         mc_task, gen_task, gen_docs)
        seconds["merged"] = round(time.perf_counter() - t0, 1)
    out = summarize(results, settings, seed, int(cfg.eval.bootstrap_samples))
    out.update({"n_multiple_choice": len(mc_docs), "n_choices": int(settings.n_choices),
                "mc_split": str(settings.mc_split), "n_generation": len(gen_docs),
                "gen_split": str(settings.gen_split), "served_model": f"{model} + {adapter}",
                "merged_model": str(merged), "seconds": seconds,
                "total_seconds": round(time.perf_counter() - started, 1), "lm_eval_version": _lm_eval_version()})
    metrics_dir = Path(str(cfg.paths.metrics))
    write_json(metrics_dir / "lmeval.json", out)
    examples = [{"id": d["id"], "served": s, "merged": h, "reference": d["reference"]}
                for d, s, h in zip(gen_docs, results["served"]["answers"], results["merged"]["answers"], strict=True)]
    write_json(metrics_dir / "lmeval" / "generations.json", examples)
    log.info("lmeval@%s: multiple choice served %.3f, merged %.3f (n=%d); ROUGE-L %.3f vs %.3f",
             domain, out["served"]["mc_accuracy"], out["merged"]["mc_accuracy"], len(mc_docs),
             out["served"]["gen_rougeL"], out["merged"]["gen_rougeL"])
    return out


def summarize(results: dict, settings: DictConfig, seed: int, n_resamples: int) -> dict:
    out: dict = {}
    for name in ("served", "merged"):
        acc = bootstrap_mean(results[name]["correct"], n_resamples, 0.95, seed)
        rouge = bootstrap_mean(results[name]["rougeL"], n_resamples, 0.95, seed)
        out[name] = {"mc_accuracy": round(acc.value, 4), "mc_accuracy_ci": [round(acc.low, 4), round(acc.high, 4)],
                     "gen_rougeL": round(rouge.value, 4), "gen_rougeL_ci": [round(rouge.low, 4), round(rouge.high, 4)]}
    served, merged = np.asarray(results["served"]["correct"]), np.asarray(results["merged"]["correct"])
    diff = bootstrap_statistic(len(served), lambda idx: 100 * (served[idx].mean() - merged[idx].mean()),
                               n_resamples, 0.95, seed)
    tolerance = float(settings.tolerance_points)
    out["mc_accuracy_difference_points"] = round(diff.value, 2)
    out["mc_accuracy_difference_ci"] = [round(diff.low, 2), round(diff.high, 2)]
    out["mc_answers_that_differ"] = int((served != merged).sum())
    out["tolerance_points"] = tolerance
    out["within_tolerance"] = bool(abs(round(diff.value, 6)) <= tolerance)  # -3.0000000000000027 is -3 points
    return out


def _lm_eval_version() -> str:
    from importlib.metadata import version

    return version("lm_eval")
