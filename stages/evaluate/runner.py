"""Generate and score the examples with one engine (the quality pass; speed is stages/evaluate/speed.py's).

    examples = load_examples(Path("data/processed/healthcare/test.jsonl"), max_examples=None)
    run = run_model(engine, examples, SamplingParams(max_new_tokens=96), batch_size=8)
    run.generations[0].text, run.nll_sums[0]
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from stages.errors import StageError
from stages.fileio import read_jsonl
from stages.inference import Engine, Generation, SamplingParams

log = logging.getLogger(__name__)


@dataclass
class Example:
    """One test record as the evaluation sees it: the conversation up to the answer, and the answer."""
    id: str
    domain: str
    messages: list[dict]          # system? + user, without the assistant turn
    reference: str                # the assistant turn's content
    expected_number: float | None  # numeric_answer when answer_type == "numeric"


@dataclass
class ModelRun:
    """What one engine produced on the examples."""
    prompts: list[str]
    generations: list[Generation]
    nll_sums: list[float | None]
    ref_token_counts: list[int | None]


def _line_numbers(path: Path) -> list[int]:
    """1-based line numbers of the non-blank lines (read_jsonl skips blank lines)."""
    with open(path, encoding="utf-8") as f:
        return [i for i, line in enumerate(f, start=1) if line.strip()]


def load_examples(path: Path, max_examples: int | None = None) -> list[Example]:
    """Read a prepared split; a record without a usable conversation raises StageError naming its line."""
    records = read_jsonl(path)
    lines = _line_numbers(path)
    examples = []
    for record, lineno in zip(records, lines, strict=True):
        where = f"{path}:{lineno}"
        messages = record.get("messages")
        if not isinstance(messages, list) or len(messages) < 2 or not all(isinstance(x, dict) for x in messages):
            raise StageError(f"{where}: field 'messages' must be a list [system?, user, assistant]; "
                             "re-run `domain-llm prepare`")
        last = messages[-1]
        if last.get("role") != "assistant" or not isinstance(last.get("content"), str):
            raise StageError(f"{where}: field 'messages' must end with an assistant turn holding the "
                             "reference answer; re-run `domain-llm prepare`")
        expected = None
        if record.get("answer_type") == "numeric":
            value = record.get("numeric_answer")
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise StageError(f"{where}: field 'numeric_answer' must be a finite number when "
                                 f"answer_type is 'numeric' (got {value!r})")
            expected = float(value)
        examples.append(Example(str(record.get("id", lineno)), str(record.get("domain", "unknown")),
                                messages[:-1], last["content"], expected))
    if not examples:
        raise StageError(f"{path}: no examples; re-run `domain-llm prepare` (is data.num_samples too small?)")
    return examples[:max_examples] if max_examples else examples


def generate_timed(engine: Engine, prompts: list[str], params: SamplingParams, batch_size: int,
                   desc: str = "generate") -> tuple[list[Generation], dict[str, float]]:
    """Generate in chunks of `batch_size` prompts of similar token length (one `engine.generate` call each;
    results come back in input order), and how long that took: examples/s and completion tokens/s over the
    summed chunk wall times. These throughputs depend on how long the answers are (a chunk runs until its
    longest answer ends), so they compare code paths on the same prompts (bench/eval_generation.py), never
    models: the evaluate stage's speed comes from speed.py's fixed-length requests."""
    # Batch prompts of similar token length together (less left padding), then restore the input order.
    order = sorted(range(len(prompts)), key=lambda i: engine.count_tokens(prompts[i])) if batch_size > 1 \
        else list(range(len(prompts)))
    by_position: dict[int, Generation] = {}
    total = 0.0
    for start in tqdm(range(0, len(prompts), batch_size), desc=desc, unit="batch", leave=False):
        chunk = order[start:start + batch_size]
        t0 = time.perf_counter()
        out = engine.generate([prompts[i] for i in chunk], params)
        total += time.perf_counter() - t0
        by_position.update(zip(chunk, out, strict=True))
    generations = [by_position[i] for i in range(len(prompts))]
    tokens = sum(g.completion_tokens for g in generations)
    speed = {
        "tokens_per_second": tokens / total if total > 0 else math.nan,
        "examples_per_second": len(prompts) / total if total > 0 else math.nan,
        "generation_seconds": total,
        "completion_tokens": tokens,
    }
    return generations, speed


def run_model(engine: Engine, examples: list[Example], params: SamplingParams, batch_size: int,
              score_references: bool = True, label: str = "") -> ModelRun:
    """Predictions and, when `score_references`, each reference's NLL given its prompt."""
    prompts = [engine.apply_chat_template(ex.messages) for ex in examples]
    chunk = max(1, min(batch_size, engine.max_batch_size))
    generations, throughput = generate_timed(engine, prompts, params, chunk, desc=f"{label} generate")
    nll: list[float | None] = [None] * len(examples)
    ntok: list[int | None] = [None] * len(examples)
    if score_references:
        for i, (prompt, ex) in enumerate(tqdm(list(zip(prompts, examples, strict=True)),
                                              desc=f"{label} score", leave=False)):
            # The answer and the end-of-turn token: what training's loss and the quantize benchmark score.
            nll[i], ntok[i] = engine.score(prompt, ex.reference, close_turn=True)
    log.info("%s: %d examples generated in %.1f s", label, len(examples), throughput["generation_seconds"])
    return ModelRun(prompts, generations, nll, ntok)
