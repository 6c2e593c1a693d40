"""`adapter` stage (adapter@<domain>): one domain's LoRA adapter as a GGUF over the shared quantized base, measured.

    domain-llm adapter --params params.yaml --domain legal      # how dvc.yaml runs it
    domain-llm adapter domain=legal                             # standalone

Reads  models/adapter/<d> (peft), models/merged/<d> (the same adapter merged, HF), models/base, models/gguf (the
       published base), data/processed/<d>/{train,test}.jsonl
Writes models/adapters/<d>/adapter.gguf with the domain's name, system prompt and routing examples in its own
       metadata (stages/inference/adapters.py), manifest.json (domain, sha256, the base it was measured on,
       metrics), and with quantize.merged_per_domain the merged model quantized (model-<type>.gguf);
       metrics/<d>/quantize.json: against the merged model in f16, the adapter on the quantized base
       (`adapter_<type>`, what the server runs) and the merged model quantized whole (`merged_<type>`).
"""

from __future__ import annotations

import json
import logging
import random
import shutil
import tempfile
from pathlib import Path

from omegaconf import DictConfig

from stages.errors import StageError
from stages.fileio import atomic_dir, read_jsonl, write_json
from stages.inference.adapters import ADAPTER_FILE
from stages.inference.messages import last_user_turn
from stages.manifest import sha256_file
from stages.prepare.records import trained_system_prompt
from stages.quantize.api import convert_and_quantize
from stages.quantize.benchmark import BenchmarkArgs, benchmark_files
from stages.quantize.lora import convert_lora_to_gguf
from stages.quantize.main import probe_texts, tensor_type_overrides

log = logging.getLogger(__name__)

ROUTING_EXAMPLES = 64  # training questions per domain for `auto` routing (a centroid settles well before)


def routing_examples(records: list[dict], n: int, seed: int) -> list[str]:
    """A seeded sample of the training split's user questions (the last user turn of each chat)."""
    questions = [q for r in records if (q := last_user_turn(r.get("messages", []))) is not None]
    random.Random(seed).shuffle(questions)
    return questions[:n]


def main(cfg: DictConfig) -> dict:
    domain = str(cfg.domain.name)
    q = cfg.quantize
    from stages.align.resolve import trained_model

    adapter_dir, merged_dir, _ = trained_model(cfg)  # align@'s when it tuned one, else train's
    base_dir = Path(cfg.paths.base_model)
    for folder, what in ((adapter_dir, "adapter_config.json"), (merged_dir, "config.json")):
        if not (folder / what).is_file():
            raise StageError(f"{folder}: no {what}; run `dvc repro train@{domain}` first")
    types = [str(t).lower() for t in q.types]
    if not types:
        raise StageError("quantize.types is empty: the adapter is measured on the first quantized base type")
    served_type, outtype = types[0], str(q.outtype)
    base_gguf = Path(cfg.paths.gguf) / f"model-{served_type}.gguf"
    if not base_gguf.is_file():
        raise StageError(f"{base_gguf}: the quantized base is missing; run `dvc repro quantize` first")
    data_dir = Path(cfg.paths.processed) / domain
    train, test = read_jsonl(data_dir / "train.jsonl"), read_jsonl(data_dir / "test.jsonl")
    facts = {"domain": domain, "system_prompt": trained_system_prompt(train),
             "routing_examples": routing_examples(train, ROUTING_EXAMPLES, int(cfg.seed))}
    threads = int(cfg.threads)
    out = Path(cfg.paths.adapter_gguf)
    with atomic_dir(out) as staging, tempfile.TemporaryDirectory(prefix=".merged.", dir=out.parent) as scratch:
        adapter = convert_lora_to_gguf(adapter_dir, base_dir, staging / ADAPTER_FILE, outtype="f16", facts=facts)
        # The merged model in f16 is the reference; quantized whole with the base's recipe, it is the
        # alternative to shipping one adapter: a full model per domain.
        files, _ = convert_and_quantize(merged_dir, Path(scratch), types=[served_type], outtype=outtype,
                                        threads=threads, llama_cpp_path=q.get("llama_cpp_path"),
                                        tokenizer_pre=str(q.get("tokenizer_pre", "auto")),
                                        probe_texts=probe_texts(test),
                                        tensor_types=tensor_type_overrides(q.get("tensor_types")))
        bench = q.benchmark
        metrics = benchmark_files(
            files[outtype], {f"merged_{served_type}": files[served_type], f"adapter_{served_type}": base_gguf},
            test, BenchmarkArgs(max_examples=int(bench.max_examples), n_ctx=int(bench.n_ctx),
                                decode_tokens=int(bench.decode_tokens), threads=threads),
            reference_type=f"merged_{outtype}", lora={f"adapter_{served_type}": adapter})
        if q.get("merged_per_domain", False):
            shutil.move(files[served_type], staging / files[served_type].name)
        manifest = {"domain": domain, "system_prompt": facts["system_prompt"],
                    "adapter": {"file": ADAPTER_FILE, "sha256": sha256_file(adapter),
                                "size_bytes": adapter.stat().st_size},
                    "base": {"file": base_gguf.name, "sha256": sha256_file(base_gguf)},
                    "merged_files": sorted(p.name for p in staging.glob("model-*.gguf")),
                    "routing_examples": len(facts["routing_examples"]), "metrics": metrics}
        (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    write_json(Path(cfg.paths.metrics) / "quantize.json", metrics)
    for name, row in metrics.items():
        log.info("%s %-16s %8.1f MB  ΔPPL %s%%  KL %s  decode %s tok/s", domain, name, row["size_mb"],
                 row.get("delta_ppl_pct"), row.get("kl_divergence"), row.get("decode_tokens_per_s"))
    return metrics
