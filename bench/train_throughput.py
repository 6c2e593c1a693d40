"""Train throughput: the train stage's setup (dynamic padding + length-grouped batches) vs a plain transformers
Trainer + peft baseline that pads every batch to max length, same model, same rows, same LoRA and optimizer,
side by side in one run. Prints the real-tokens/s ratio (goal >= 2x) and the peak memory of LoRA vs QLoRA;
writes bench/results/train_throughput.json with the command.

    python bench/train_throughput.py --model /tmp/smol_base --data data/processed/healthcare/train.jsonl
    python bench/train_throughput.py --model /tmp/smol_base --data /tmp/realdata/processed/healthcare/train.jsonl \
        --rows 64 --batch-size 8 --max-seq-length 256 --threads 2

Each variant trains one epoch over the same `--rows` rows in its own subprocess (so peak RSS is its own):
  ours-lora      the stage's code: stages.train.{model,data,loop} (fp32 LoRA on CPU)
  baseline-lora  tokenizer(text, padding="max_length") + DataCollatorForLanguageModeling + Trainer (random order)
  ours-qlora     the stage's code with a 4-bit nf4 base (fp32 compute on CPU)
Tokens/s counts real (non-padding) tokens, so both sides are credited for the same work; padding is waste.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

VARIANTS = ("ours-lora", "baseline-lora", "ours-qlora")
TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def common_args(args, output_dir: str) -> dict:
    """The hyper-parameters both sides share (TrainingArguments keywords)."""
    return dict(output_dir=output_dir, per_device_train_batch_size=args.batch_size, learning_rate=2e-4,
                num_train_epochs=1, lr_scheduler_type="cosine", optim="adamw_torch", save_strategy="no",
                report_to="none", use_cpu=True, logging_steps=1000, seed=42, disable_tqdm=True,
                include_num_input_tokens_seen="non_padding")


def run_ours(args, qlora: bool) -> dict:
    import torch

    from stages.fileio import read_jsonl
    from stages.train.data import tokenize_chat_records
    from stages.train.loop import build_trainer
    from stages.train.model import apply_lora, load_base_model, load_tokenizer
    from stages.train.settings import LoraSettings, QuantSettings, TrainSettings

    torch.manual_seed(42)
    tokenizer = load_tokenizer(Path(args.model))
    rows = read_jsonl(args.data)[: args.rows]
    examples = tokenize_chat_records([r["messages"] for r in rows], tokenizer, args.max_seq_length)
    model = load_base_model(Path(args.model), "qlora" if qlora else "lora", QuantSettings(), on_cuda=False)
    footprint_mb = model.get_memory_footprint() / 2**20  # parameters + buffers: what 4-bit shrinks
    model = apply_lora(model, LoraSettings(r=16, alpha=32, dropout=0.05, target_modules=TARGETS))
    with tempfile.TemporaryDirectory() as tmp:
        settings = TrainSettings(mode="qlora" if qlora else "lora", batch_size=args.batch_size, epochs=1,
                                 max_seq_length=args.max_seq_length, warmup_ratio=0.0, logging_steps=1000,
                                 eval_steps=1000, save_steps=100000, checkpoint_dir=tmp, group_by_length=True)
        trainer = build_trainer(model, tokenizer, examples, None, settings, on_cuda=False, log_curves=False)
        collate, processed = trainer.data_collator, []

        def counting_collator(features):  # padded batch sizes, to report the padding our batches still carry
            batch = collate(features)
            processed.append(batch["input_ids"].numel())
            return batch

        trainer.data_collator = counting_collator
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return {**measure(trainer.state.num_input_tokens_seen, sum(processed), seconds, len(examples),
                      trainer.state.log_history), "base_weights_mb": round(footprint_mb, 1)}


def run_baseline(args) -> dict:
    """What a plain Trainer + peft script does: template the whole chat, pad to max length, train on all tokens."""
    import torch
    from datasets import Dataset
    from peft import LoraConfig, get_peft_model
    from transformers import (
        AutoModelForCausalLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        Trainer,
        TrainingArguments,
    )

    from stages.fileio import read_jsonl

    torch.manual_seed(42)
    tokenizer = AutoTokenizer.from_pretrained(args.model)
    rows = read_jsonl(args.data)[: args.rows]
    texts = [tokenizer.apply_chat_template(r["messages"], tokenize=False) for r in rows]
    data = Dataset.from_dict({"text": texts}).map(
        lambda b: tokenizer(b["text"], padding="max_length", truncation=True, max_length=args.max_seq_length),
        batched=True, remove_columns=["text"])
    model = AutoModelForCausalLM.from_pretrained(args.model, dtype=torch.float32)
    model = get_peft_model(model, LoraConfig(r=16, lora_alpha=32, lora_dropout=0.05, target_modules=TARGETS,
                                             task_type="CAUSAL_LM"))
    with tempfile.TemporaryDirectory() as tmp:
        trainer = Trainer(model=model, args=TrainingArguments(**common_args(args, tmp)), train_dataset=data,
                          data_collator=DataCollatorForLanguageModeling(tokenizer, mlm=False))
        start = time.perf_counter()
        trainer.train()
        seconds = time.perf_counter() - start
    return measure(trainer.state.num_input_tokens_seen, len(data) * args.max_seq_length, seconds, len(data),
                   trainer.state.log_history)


def measure(real_tokens: int, processed_tokens: int, seconds: float, rows: int, history: list[dict]) -> dict:
    loss = next((e["train_loss"] for e in reversed(history) if "train_loss" in e), None)
    return {"rows": rows, "seconds": round(seconds, 2), "real_tokens": int(real_tokens),
            "processed_tokens": int(processed_tokens),
            "padding_fraction": round(1 - real_tokens / processed_tokens, 3),
            "real_tokens_per_second": round(real_tokens / seconds, 2), "train_loss": loss,
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def worker(args) -> None:
    import torch

    torch.set_num_threads(args.threads)
    result = {"ours-lora": lambda: run_ours(args, qlora=False), "baseline-lora": lambda: run_baseline(args),
              "ours-qlora": lambda: run_ours(args, qlora=True)}[args.worker]()
    print("RESULT " + json.dumps(result), flush=True)


def run_variant(name: str, argv: list[str]) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), *argv, "--worker", name]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        sys.exit(f"{name} failed:\n{proc.stderr[-3000:]}")
    return json.loads(lines[-1][len("RESULT "):])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="models/base")
    parser.add_argument("--data", default="data/processed/healthcare/train.jsonl")
    parser.add_argument("--rows", type=int, default=64, help="rows trained (one epoch) by every variant")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--output", default=str(ROOT / "bench" / "results" / "train_throughput.json"))
    parser.add_argument("--worker", choices=VARIANTS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    argv = ["--model", args.model, "--data", args.data, "--rows", str(args.rows), "--batch-size",
            str(args.batch_size), "--max-seq-length", str(args.max_seq_length), "--threads", str(args.threads)]
    results = {}
    for name in VARIANTS:
        results[name] = run_variant(name, argv)
        print(f"{name:14s} {json.dumps(results[name])}", flush=True)
    ratio = results["ours-lora"]["real_tokens_per_second"] / results["baseline-lora"]["real_tokens_per_second"]
    report = {
        "name": "train_throughput",
        "command": "python bench/train_throughput.py " + " ".join(argv),
        "variants": results,
        "tokens_per_second_ratio_ours_vs_padded_baseline": round(ratio, 2),
        "goal_ratio": 2.0, "goal_met": ratio >= 2.0,
        "peak_rss_mb": {"lora": results["ours-lora"]["peak_rss_mb"], "qlora": results["ours-qlora"]["peak_rss_mb"]},
        "base_weights_mb": {"lora": results["ours-lora"]["base_weights_mb"],
                            "qlora": results["ours-qlora"]["base_weights_mb"]},
        "machine": {"processor": platform.machine(), "cpu_count": os.cpu_count(), "torch_threads": args.threads,
                    "load_average_1m_at_end": round(os.getloadavg()[0], 2)},
    }
    from stages.fileio import write_json

    write_json(args.output, report)
    print(f"train tokens/s: ours {results['ours-lora']['real_tokens_per_second']:.0f} vs padded baseline "
          f"{results['baseline-lora']['real_tokens_per_second']:.0f}: {ratio:.2f}x (goal >= 2x); peak RSS LoRA "
          f"{report['peak_rss_mb']['lora']:.0f} MB vs QLoRA {report['peak_rss_mb']['qlora']:.0f} MB (base weights "
          f"{report['base_weights_mb']['lora']:.0f} vs {report['base_weights_mb']['qlora']:.0f} MB) -> {args.output}")


if __name__ == "__main__":
    main()
