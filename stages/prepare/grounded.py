"""Grounded training examples: a share of the train split rewritten into the /api/v1/ask prompt (the passages
the index returns for the question, numbered, then the question) with the reference answer citing the passage
that holds it. A model fine-tuned only on bare questions answers from memory even when given passages (on
unseen facts it ignored them: ROUGE-L x1.03 with retrieval, no citation); these examples teach it to read and
cite them.

    records, count = ground_training_examples(splits["train"], Retriever.load("models/index"), share=0.15,
                                              top_k=3, seed=42)

A record is grounded only when a retrieved passage contains its answer verbatim (otherwise the next record is
tried), so no example teaches answering from passages that lack the answer. Grounded records keep their id,
question, fact and `output` (the reference answer, as every consumer expects); the assistant turn of `messages`
is the answer with its citation ("... [2].") and `grounded` is True.

The index holds every fact, held-out ones included: with `held_out` (stages/prepare/held_out.py) the
CANDIDATES best passages are retrieved, those stating a held-out fact are skipped, and the top_k best of the
rest are the prompt's, so no training prompt states a fact that test_facts or validation_facts asks.
"""

from __future__ import annotations

import logging
import random

from stages.inference.grounding import Passage, grounded_messages
from stages.inference.retrieval import Retriever
from stages.prepare.held_out import HeldOutAnswers, skip_held_out
from stages.prepare.records import user_content

log = logging.getLogger(__name__)

# Passages retrieved per question before those stating a held-out fact are skipped: with 15% + 15% of the
# facts held out 29-42% of a domain's passages hold a held-out paragraph, with 25% + 20% 43-53% (healthcare
# 85 of 160), and 20 still left top_k for every grounded example asked for; without held-out facts the first
# top_k of them are exactly what a top_k search returns (the order is stable).
CANDIDATES = 20


def cite(answer: str, number: int) -> str:
    """The answer with `[number]` before its final full stop (or at its end)."""
    answer = answer.strip()
    return f"{answer[:-1]} [{number}]." if answer.endswith(".") else f"{answer} [{number}]"


def ground_training_examples(records: list[dict], retriever: Retriever, share: float, top_k: int,
                             seed: int, held_out: HeldOutAnswers | None = None) -> tuple[list[dict], int]:
    """(records with round(share * len) of them grounded, how many were grounded); each grounded prompt has
    `top_k` passages, none stating a `held_out` fact, and one holding the record's answer."""
    wanted = round(len(records) * share)
    order = list(range(len(records)))
    random.Random(f"{seed}:grounded").shuffle(order)
    out = list(records)
    grounded = 0
    for i in order:
        if grounded == wanted:
            break
        record = records[i]
        question = user_content(record["instruction"], record.get("input") or "")
        hits = skip_held_out(retriever.search(question, max(CANDIDATES, top_k), "hybrid"), held_out)[:top_k]
        if len(hits) < min(top_k, len(retriever.chunks)):  # a prompt shorter than served ones: skip it
            continue
        holding = [n for n, hit in enumerate(hits, start=1) if record["output"].strip() in hit.chunk.text]
        if not holding:
            continue
        output = cite(record["output"], holding[0])
        prompt = grounded_messages(record["messages"][:-1], [Passage(h.chunk.title, h.chunk.text) for h in hits])
        out[i] = {**record, "messages": [*prompt, {"role": "assistant", "content": output}],
                  "grounded": True, "passages": [h.chunk.chunk_id for h in hits]}
        grounded += 1
    if grounded < wanted:
        log.warning("grounded %d of the %d training examples asked for (prepare.grounded.share=%s): the others' "
                    "answers are not in their top %d passages free of held-out facts", grounded, wanted,
                    share, top_k)
    return out, grounded
