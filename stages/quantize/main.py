"""`quantize` stage: the shared base HF model -> verified GGUFs (f16 + each quantization type), manifest,
Modelfile, and a size/quality/speed benchmark on every domain's test questions into metrics/quantize.json.
Each domain's adapter then runs on this base (the `adapter` stage, stages/quantize/adapter.py).

    domain-llm quantize                                     # conf/ defaults (models/base -> models/gguf)
    domain-llm quantize quantize.source=models/merged/legal 'quantize.types=[q4_k_m]'   # any HF folder
    domain-llm quantize 'quantize.types=[iq2_xxs,q4_k_m]' quantize.imatrix.enabled=true
    domain-llm quantize --params params.yaml                # how dvc.yaml runs it
"""

from __future__ import annotations

import logging
from itertools import zip_longest
from pathlib import Path

from omegaconf import DictConfig, OmegaConf

from stages.config import domain_names
from stages.errors import StageError
from stages.fileio import atomic_dir, read_jsonl, write_json
from stages.inference.chat import ChatContract
from stages.inference.gguf import load_llama
from stages.manifest import served_model_facts, write_manifest
from stages.quantize.api import convert_and_quantize
from stages.quantize.benchmark import BenchmarkArgs, benchmark_files
from stages.quantize.publish import source_model_info, write_modelfile
from stages.quantize.quantize import file_type

log = logging.getLogger(__name__)


def all_domains_split(cfg: DictConfig, split: str) -> list[dict]:
    """`split` of every domain in `domains`, interleaved, so the first N records cover them all."""
    per_domain = [read_jsonl(Path(cfg.paths.processed) / name / f"{split}.jsonl") for name in domain_names(cfg)]
    return [r for group in zip_longest(*per_domain) for r in group if r is not None]


def probe_texts(records: list[dict], n: int = 200) -> list[str]:
    """Domain strings for the tokenizer parity check: the test split's questions and answers."""
    texts = []
    for record in records:
        texts += [m["content"] for m in record.get("messages", []) if m.get("content")]
    return texts[:n]


def importance_matrix(cfg: DictConfig, model_dir: Path) -> dict | None:
    """The importance matrix when quantize.imatrix.enabled, calibrated on a split other than the scored one."""
    settings = cfg.quantize.get("imatrix") or {}
    if not settings.get("enabled", False):
        return None
    split = str(settings.get("split", "train"))
    if split == "test":
        raise StageError("quantize.imatrix.split: calibrating on the test split would inflate the quality "
                         "benchmark; use train or validation")
    from stages.quantize.imatrix import compute_imatrix

    return compute_imatrix(model_dir, all_domains_split(cfg, split),
                           max_examples=int(settings.get("max_examples", 200)))


def tensor_type_overrides(node) -> dict[str, dict[str, str]]:
    """quantize.tensor_types as {type: {tensor regex: GGML type}}, or a one-line error naming the bad field."""
    value = OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else (node or {})
    shape = "expected {<quantize type>: {<tensor regex>: <ggml type>}}, e.g. {q4_k_m: {ffn_down: q6_k}}"
    if not isinstance(value, dict):
        raise StageError(f"quantize.tensor_types: {shape}; got {value!r}")
    for type_name, overrides in value.items():
        if not isinstance(overrides, dict):
            raise StageError(f"quantize.tensor_types.{type_name}: {shape}; got {overrides!r}")
    return {str(k).lower(): {str(p): str(t) for p, t in v.items()} for k, v in value.items()}


def gguf_chat_contract(path: Path) -> ChatContract:
    """The chat contract as the published GGUF itself carries it (vocabulary and metadata only)."""
    llm = load_llama(path, vocab_only=True)
    try:
        return ChatContract.from_gguf(llm)
    finally:
        llm.close()


def main(cfg: DictConfig) -> dict:
    q = cfg.quantize
    model_dir = Path(str(q.get("source") or cfg.paths.base_model))
    if not (model_dir / "config.json").is_file():
        raise StageError(f"{model_dir}: no HF model here (config.json missing); run `dvc repro base` first "
                         "or point quantize.source at an HF model folder")
    types = [str(t).lower() for t in q.types]
    tensor_types = tensor_type_overrides(q.get("tensor_types"))
    imatrix_enabled = bool((q.get("imatrix") or {}).get("enabled", False))
    for name in types:  # a typo in quantize.types fails before the importance matrix loads the model
        file_type(name, have_imatrix=imatrix_enabled)
    records = all_domains_split(cfg, "test")
    imatrix = importance_matrix(cfg, model_dir)
    outtype = str(q.outtype)
    threads = int(cfg.threads)
    out_dir = Path(cfg.paths.gguf)
    with atomic_dir(out_dir) as staging:
        files, reports = convert_and_quantize(model_dir, staging, types=types, outtype=outtype, threads=threads,
                                              llama_cpp_path=q.get("llama_cpp_path"),
                                              tokenizer_pre=str(q.get("tokenizer_pre", "auto")),
                                              probe_texts=probe_texts(records), tensor_types=tensor_types,
                                              imatrix=imatrix)
        bench = q.benchmark
        metrics = benchmark_files(
            files[outtype], {t: p for t, p in files.items() if t != outtype}, records,
            BenchmarkArgs(max_examples=int(bench.max_examples), n_ctx=int(bench.n_ctx),
                          decode_tokens=int(bench.decode_tokens), threads=threads),
            reference_type=outtype)
        for name, report in reports.items():
            metrics[name]["bits_per_weight"] = round(report["bits_per_weight"], 3)
        # The base was trained for no domain: its system prompt is none; a merged model (quantize.source)
        # carries its own in its manifest.
        served = served_model_facts(model_dir)
        write_manifest(staging, files, source_model_info(model_dir),
                       {"quantize": OmegaConf.to_container(q, resolve=True), "threads": threads,
                        "domains": domain_names(cfg)}, reports, served=served)
        served_file = files[types[0] if types else outtype]
        write_modelfile(staging, served_file.name, gguf_chat_contract(served_file), served["system_prompt"])
    write_json(Path(cfg.paths.metrics) / "quantize.json", metrics)
    for name, row in metrics.items():
        log.info("%-8s %8.1f MB  ΔPPL %s%%  KL %s  top1 %s  decode %s tok/s", name, row["size_mb"],
                 row.get("delta_ppl_pct"), row.get("kl_divergence"), row.get("top1_agreement"),
                 row.get("decode_tokens_per_s"))
    return metrics
