"""Held-out means held out: no text a model or the reranker trains on states a held-out fact.

The test_facts and validation_facts splits ask facts that no train or validation record states. The index
(stages/index) is built from fact sheets that hold EVERY fact, so a passage retrieved for a training question
may hold a held-out answer; grounded training prompts (prepare) and the reranker's passage pairs skip such
passages, prepare's `held_out_text` check refuses any train/validation record that still holds one, and the
train_reranker stage refuses any pair that does.

    held_out = HeldOutAnswers.from_splits(splits)        # test_facts + validation_facts vs train + validation
    held_out.stated_in("Asthma\\nAsthma is treated with ...")   # HeldOutFact(split, fact, answer) or None
    passages = skip_held_out(hits, held_out)            # retrieved hits that state no held-out fact

When a text states a held-out fact (the predicate; texts compare as lower-cased word tokens, so the case,
spacing and punctuation that cleaning or chunking change do not matter):
- it holds the whole held-out answer, or
- it holds a run of MIN_SHARED_WORDS consecutive words of the answer that no taught answer (an answer of the
  train or validation split) also holds.
The second rule catches a piece of a held-out paragraph: the index cuts a paragraph longer than
index.chunk_words into windows of chunk_words words overlapping by index.overlap_words, and every window
holds more than overlap_words words (the last one starts before the final overlap), so with the committed
10-word overlap every window is caught unless each of its runs is taught wording. Only a tail window under
MIN_SHARED_WORDS words (possible with overlap_words < 7) goes uncounted: a few words cut from a sentence.
The exemption keeps the rule from flagging the taught facts: synthetic answers share template wording (the
legal "area" answers of duress and misrepresentation share 13 words, "belongs to contract law, among the
factors that can make a contract voidable"), and a run that a taught answer also says teaches nothing the
training answers do not; the run that names the held-out subject is not taught and still counts.

    python -m stages.prepare.held_out data/processed/healthcare data/processed/legal   # verbatim leak counts
"""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TypeVar

from stages.prepare.splits import UNSEEN_FACT_SPLITS

# 8 words: in the synthetic data measured (15% + 15% and 25% + 20% of the facts held out) a held-out answer
# shares at most 7 untaught words with a paragraph about something else ("is managed by an endocrinologist
# hormone specialist"), so no such paragraph is flagged, and every window the committed chunking (35 words,
# 10 overlap) cuts holds 11 or more.
MIN_SHARED_WORDS = 8
# The splits a model trains or early-stops on: their records must state no held-out fact, and their answers
# are the taught text a shared run may come from.
TAUGHT_SPLITS = ("train", "validation")
_WORD = re.compile(r"\w+")


def words(text: str) -> tuple[str, ...]:
    """Lower-cased word tokens: the unit the predicate compares."""
    return tuple(_WORD.findall(text.casefold()))


def _runs(tokens: tuple[str, ...], n: int) -> Iterable[tuple[str, ...]]:
    return (tokens[i:i + n] for i in range(len(tokens) - n + 1))


@dataclass(frozen=True)
class HeldOutFact:
    """One held-out reference answer: the split asking it and its fact (fact_id, else the record id)."""

    split: str
    fact: str
    answer: str


class HeldOutAnswers:
    """The held-out answers and the word runs that state them (see the module docstring)."""

    def __init__(self, facts: Iterable[HeldOutFact], taught: Iterable[str] = (),
                 min_words: int = MIN_SHARED_WORDS) -> None:
        self.facts = list(dict.fromkeys(facts))
        self.min_words = min_words
        taught_runs = {run for text in taught for run in _runs(words(text), min_words)}
        # " a b c " in " x a b c y ": whole answers match on word boundaries as strings (fast in C)
        self._whole: dict[str, HeldOutFact] = {}
        self._pieces: dict[tuple[str, ...], HeldOutFact] = {}
        for fact in self.facts:
            tokens = words(fact.answer)
            if tokens:
                self._whole.setdefault(f" {' '.join(tokens)} ", fact)
            for run in _runs(tokens, min_words):
                if run not in taught_runs:
                    self._pieces.setdefault(run, fact)

    @classmethod
    def from_splits(cls, splits: Mapping[str, Sequence[dict]],
                    min_words: int = MIN_SHARED_WORDS) -> HeldOutAnswers:
        """The reference answers of test_facts and validation_facts records, taught: train + validation's."""
        facts = [HeldOutFact(split, str(r.get("fact_id") or r["id"]), r["output"])
                 for split in UNSEEN_FACT_SPLITS for r in splits.get(split, [])]
        taught = [r["output"] for split in TAUGHT_SPLITS for r in splits.get(split, [])]
        return cls(facts, taught, min_words)

    def __len__(self) -> int:
        return len(self.facts)

    def stated_in(self, text: str) -> HeldOutFact | None:
        """The first held-out fact `text` states (its whole answer, or an untaught run of min_words of it),
        else None."""
        if not self.facts:
            return None
        tokens = words(text)
        joined = f" {' '.join(tokens)} "
        for whole, fact in self._whole.items():
            if whole in joined:
                return fact
        return next((self._pieces[run] for run in _runs(tokens, self.min_words) if run in self._pieces), None)


HitT = TypeVar("HitT")


def skip_held_out(hits: Iterable[HitT], held_out: HeldOutAnswers | None) -> list[HitT]:
    """The retrieved hits (stages.inference.retrieval.Hit) whose passage (title and text, as a prompt shows
    it) states no held-out fact, in their order."""
    if not held_out:
        return list(hits)
    return [h for h in hits if held_out.stated_in(f"{h.chunk.title}\n{h.chunk.text}") is None]


def record_statements(name: str, records: Iterable[dict], held_out: HeldOutAnswers) -> list[str]:
    """'<split>:<id> messages[i] (<role>) states <split> fact <fact>' for each record of split `name` with a
    message (system, the prompt with any passages, or the answer) that states a held-out fact."""
    found = []
    for record in records:
        for i, message in enumerate(record.get("messages") or []):
            fact = held_out.stated_in(str(message.get("content") or ""))
            if fact is not None:
                where = f"{name}:{record['id']} messages[{i}] ({message.get('role')})"
                found.append(f"{where} states {fact.split} fact {fact.fact}")
                break
    return found


def count_verbatim_leaks(splits: Mapping[str, Sequence[dict]]) -> dict[str, tuple[int, int]]:
    """{test_facts|validation_facts: (unique reference answers found verbatim inside a train or validation
    prompt, unique reference answers)}: the plain measure of the leak, independent of the predicate above."""
    prompts = ["\n".join(str(m.get("content") or "") for m in (r.get("messages") or [])[:-1])
               for split in TAUGHT_SPLITS for r in splits.get(split, [])]
    counts = {}
    for split in UNSEEN_FACT_SPLITS:
        answers = {r["output"].strip() for r in splits.get(split, [])}
        counts[split] = (sum(1 for a in answers if any(a in p for p in prompts)), len(answers))
    return counts


def main(folders: Sequence[str]) -> None:
    """Print count_verbatim_leaks for each prepared folder (data/processed/<domain>)."""
    from pathlib import Path

    from stages.fileio import read_jsonl

    for folder in folders:
        splits = {split: read_jsonl(path) for split in (*TAUGHT_SPLITS, *UNSEEN_FACT_SPLITS)
                  if (path := Path(folder) / f"{split}.jsonl").is_file()}
        counts = count_verbatim_leaks(splits)
        print(folder, " ".join(f"{split} {leaked}/{total}" for split, (leaked, total) in counts.items()))


if __name__ == "__main__":
    main(sys.argv[1:] or ["data/processed/healthcare", "data/processed/legal", "data/processed/finance"])
