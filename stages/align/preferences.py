"""Preference data for `align@<domain>`: the SFT model's own sampled answers judged against the reference, and
local preference files (TRL's paired `prompt/chosen/rejected` or KTO's unpaired `prompt/completion/label`).

    verdict = judge(answer, stopped=True, record=train_record)      # None = right, else the reason it is wrong
    pairs, report = build_pairs(records, samples)                   # samples[i]: (text, stopped) answers
    rows = load_preference_file(Path("data/preferences/legal.jsonl"))

A sample is wrong for one reason, checked in this order (the first that applies is counted):
  no_stop         generation ran to max_new_tokens without the end-of-turn token
  wrong_number    a numeric question (numeric_answer) whose answer does not hold that number
  no_citation     a grounded prompt (numbered passages) answered without citing one
  wrong_citation  it cites passages, none of which holds the reference answer (when one does)
  wrong_fact      the words differ from the reference (token F1 below `min_f1`)
The pair's `chosen` is a right sample when one was drawn (on-policy), else the reference; on a grounded prompt
the reference gets the citation of the passage holding it, as the grounding instruction asks.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from stages.errors import StageError
from stages.evaluate import metrics as m
from stages.fileio import read_jsonl_numbered
from stages.inference.grounding import CITATION, GROUNDING, Passage, check_citations, grounded_messages

REASONS = ("no_stop", "wrong_number", "no_citation", "wrong_citation", "wrong_fact")
PASSAGE = re.compile(r"^\[(\d{1,3})\] (.*)$", re.MULTILINE)


@dataclass(frozen=True)
class Judge:
    min_f1: float = 0.6
    numeric_abs_tol: float = 0.01
    numeric_rel_tol: float = 1e-4


def numbered_passages(record: dict) -> dict[int, str]:
    """The numbered passages of a grounded prompt (n -> "title: text"), read from its last user turn."""
    users = [t["content"] for t in record.get("messages", []) if t["role"] == "user"]
    if not users or not users[-1].startswith("Context:\n"):
        return {}
    context = users[-1].split("\n\nQuestion: ")[0]
    return {int(n): text for n, text in PASSAGE.findall(context)}


def is_grounded(record: dict) -> bool:
    system = next((t["content"] for t in record.get("messages", []) if t["role"] == "system"), "")
    return GROUNDING in system and bool(numbered_passages(record))


def gold_passages(record: dict) -> list[int]:
    reference = record["output"].strip()
    return [n for n, text in numbered_passages(record).items() if reference and reference in text]


def judge(answer: str, stopped: bool, record: dict, rules: Judge = Judge()) -> str | None:
    """None when `answer` is right for `record`, else the reason (REASONS) it is not."""
    if not stopped:
        return "no_stop"
    words = answer
    if record.get("numeric_answer") is not None:
        if not m.numeric_match(answer, float(record["numeric_answer"]), rules.numeric_abs_tol,
                               rules.numeric_rel_tol):
            return "wrong_number"
    if is_grounded(record):
        _, cited, _ = check_citations(answer, len(numbered_passages(record)))
        if not cited:
            return "no_citation"
        gold = gold_passages(record)
        if gold and not set(cited) & set(gold):
            return "wrong_citation"
        words = CITATION.sub("", answer)
    if m.token_prf(words, record["output"]).f1 < rules.min_f1:
        return "wrong_fact"
    return None


def one_passage_variant(record: dict) -> dict | None:
    """The grounded record asked with only the passage that holds its answer, numbered [1], and its answer citing
    [1]; None for other records. Training prompts carry 3 passages and the answer's number is where retrieval put
    it; the server often gives fewer (`serve.ask_top_k`, grounded@'s top_k 1). Preferences on 3-passage prompts
    alone taught DPO to cite [2] or [3] whatever was given (bench/results/align_align-dpo.md: legal's answers
    citing a passage fell from 0.96 to 0.29)."""
    gold = gold_passages(record) if is_grounded(record) else []
    if not gold:
        return None
    messages = record["messages"]
    system = next((t["content"] for t in messages if t["role"] == "system"), "")
    question = [t["content"] for t in messages if t["role"] == "user"][-1].split("\n\nQuestion: ", 1)[-1]
    title, _, text = numbered_passages(record)[gold[0]].partition(": ")
    plain_system = system.replace(f"\n\n{GROUNDING}", "").replace(GROUNDING, "").strip()
    prompt = grounded_messages(([{"role": "system", "content": plain_system}] if plain_system else []) +
                               [{"role": "user", "content": question}], [Passage(title, text)])
    answer = re.sub(r"(\[1\])+", "[1]", CITATION.sub("[1]", messages[-1]["content"].strip()))
    return {**record, "id": f"{record.get('id', '')}#one-passage", "messages": [*prompt, {"role": "assistant",
                                                                                         "content": answer}]}


def reference_answer(record: dict) -> str:
    """The reference as the model should say it: the answer `train` supervised (on grounded prompts prepare
    already cites the passage there), else the output with the citation of the passage that holds it."""
    trained = (record.get("messages") or [{}])[-1]
    if trained.get("role") == "assistant" and trained.get("content", "").strip():
        if judge(trained["content"].strip(), True, record) is None:
            return trained["content"].strip()
    answer = record["output"].strip()
    gold = gold_passages(record) if is_grounded(record) else []
    if gold and not CITATION.search(answer):
        marks = "".join(f"[{n}]" for n in gold[:1])
        answer = f"{answer[:-1]} {marks}." if answer.endswith(".") else f"{answer} {marks}"
    return answer


def build_pairs(records: list[dict], samples: list[list[tuple[str, bool]]],
                rules: Judge = Judge()) -> tuple[list[dict], dict]:
    """One pair per wrong sample: {"record", "chosen", "rejected", "reason", "chosen_from"}; and the report
    (samples judged, right, wrong by reason, pairs, chosen from a sample or the reference)."""
    if len(records) != len(samples):
        raise ValueError(f"{len(records)} records but {len(samples)} sample lists")
    reasons: Counter = Counter()
    pairs, right = [], 0
    for record, drawn in zip(records, samples, strict=True):
        verdicts = [(text.strip(), judge(text.strip(), stopped, record, rules)) for text, stopped in drawn]
        good = [text for text, why in verdicts if why is None]
        right += len(good)
        seen: set[str] = set()
        for text, why in verdicts:
            if why is None or text in seen:
                continue
            seen.add(text)
            reasons[why] += 1
            chosen, source = (good[0], "sample") if good else (reference_answer(record), "reference")
            pairs.append({"record": record, "chosen": chosen, "rejected": text, "reason": why,
                          "chosen_from": source})
    report = {"questions": len(records), "samples": sum(len(s) for s in samples), "right": right,
              "wrong_by_reason": {r: reasons[r] for r in REASONS}, "pairs": len(pairs),
              "chosen_from": dict(Counter(p["chosen_from"] for p in pairs))}
    return pairs, report


# -- local files --------------------------------------------------------------------------------------------
PAIRED, UNPAIRED = ("prompt", "chosen", "rejected"), ("prompt", "completion", "label")


def _prompt_messages(value: object, where: str) -> list[dict]:
    """A prompt is a question (str) or a chat without the answer (list of {role, content}, last one user)."""
    if isinstance(value, str) and value.strip():
        return [{"role": "user", "content": value}]
    if isinstance(value, list) and value and all(
            isinstance(t, dict) and isinstance(t.get("role"), str) and isinstance(t.get("content"), str)
            for t in value) and value[-1]["role"] == "user":
        return [dict(t) for t in value]
    raise StageError(f"{where}: field 'prompt' must be a non-empty string or a list of {{role, content}} ending "
                     "with a user turn")


def load_preference_file(path: Path) -> list[dict]:
    """Rows {"messages": prompt chat, "chosen", "rejected"} or {"messages", "completion", "label"}; one format per
    file. Errors name the file, the line and the field."""
    rows, kind = [], None
    for n, row in read_jsonl_numbered(path):
        where = f"{path}:{n}"
        this = PAIRED if "chosen" in row or "rejected" in row else UNPAIRED
        if kind is None:
            kind = this
        elif this != kind:
            raise StageError(f"{where}: mixes formats: this file's first row is {'/'.join(kind)}, this row "
                             f"{'/'.join(this)}; one format per file")
        for field in this:
            if field not in row:
                raise StageError(f"{where}: field '{field}' missing; rows need {', '.join(this)}")
        messages = _prompt_messages(row["prompt"], where)
        if this == PAIRED:
            for field in ("chosen", "rejected"):
                if not isinstance(row[field], str) or not row[field].strip():
                    raise StageError(f"{where}: field '{field}' must be a non-empty string (the answer)")
            if row["chosen"].strip() == row["rejected"].strip():
                raise StageError(f"{where}: fields 'chosen' and 'rejected' are the same answer")
            rows.append({"messages": messages, "chosen": row["chosen"].strip(), "rejected": row["rejected"].strip()})
        else:
            if not isinstance(row["completion"], str) or not row["completion"].strip():
                raise StageError(f"{where}: field 'completion' must be a non-empty string (the answer)")
            if not isinstance(row["label"], bool):
                raise StageError(f"{where}: field 'label' must be true (a good answer) or false (a bad one)")
            rows.append({"messages": messages, "completion": row["completion"].strip(), "label": row["label"]})
    if not rows:
        raise StageError(f"{path}: no rows; give one JSON object per line ({', '.join(PAIRED)} or "
                         f"{', '.join(UNPAIRED)})")
    return rows


def load_feedback(path: Path, system: str | None) -> list[dict]:
    """data/feedback/<domain>.jsonl (the server's POST /api/v1/feedback) as unpaired rows; a line the server
    could not have written is an error naming it."""
    rows = []
    for n, row in read_jsonl_numbered(path):
        where = f"{path}:{n}"
        for field, kind in (("question", str), ("answer", str), ("label", bool)):
            if not isinstance(row.get(field), kind):
                raise StageError(f"{where}: field '{field}' missing or not a {kind.__name__}; fix or delete the line")
        prompt = row.get("system") or system
        messages = ([{"role": "system", "content": prompt}] if prompt else []) + [
            {"role": "user", "content": row["question"]}]
        rows.append({"messages": messages, "completion": row["answer"].strip(), "label": row["label"]})
    return rows
