"""Verifiable rewards for GRPO (`align.method=grpo`): plain functions of the completion and the question's
record, in TRL's reward-function form (`f(prompts, completions, completion_ids, **columns) -> list[float|None]`;
None where a reward does not apply, which TRL leaves out of that function's mean).

    numeric_reward(prompts, completions, numeric_answer=[106702.42, None])   # -> [1.0, None] when the first holds it
    numeric_close_reward(prompts, completions, numeric_answer=[200.0])       # "... = 150" -> 0.75
    citation_reward(prompts, completions, gold_passages=[[3], []], n_passages=[3, 0])
    stop_reward(prompts, completions, completion_ids=ids, end_of_turn_id=[2, 2])

Each question's columns come from stages.align.main.grpo_rows: numeric_answer (finance's computed questions),
gold_passages / n_passages (grounded prompts: the numbered passages holding the reference answer) and
end_of_turn_id (the model's chat contract).
"""

from __future__ import annotations

from collections.abc import Sequence

from stages.evaluate import metrics as m
from stages.inference.grounding import check_citations

NUMERIC_ABS_TOL, NUMERIC_REL_TOL = 0.01, 1e-4  # eval.numeric_abs_tol / numeric_rel_tol's defaults


def _text(completion) -> str:
    """TRL passes a string (plain prompts) or a list with one assistant message (conversational ones)."""
    if isinstance(completion, str):
        return completion
    return "".join(turn.get("content", "") for turn in completion)


def numeric_reward(prompts: Sequence, completions: Sequence, numeric_answer: Sequence[float | None] | None = None,
                   **_) -> list[float | None]:
    """1 when the answer holds the question's exact number (within the evaluation's tolerance), else 0."""
    answers = numeric_answer or [None] * len(completions)
    return [None if want is None else m.numeric_match(_text(c), float(want), NUMERIC_ABS_TOL, NUMERIC_REL_TOL)
            for c, want in zip(completions, answers, strict=True)]


def numeric_close_reward(prompts: Sequence, completions: Sequence,
                         numeric_answer: Sequence[float | None] | None = None, **_) -> list[float | None]:
    """Partial credit for the result: 1 - relative error of the answer's last number (its result, after the
    formula), floored at 0; 0 without a number. The exact reward gives no gradient while no sample of a
    question is right (a small model guesses the result of a formula it sets up correctly); this one does."""
    answers = numeric_answer or [None] * len(completions)
    out: list[float | None] = []
    for c, want in zip(completions, answers, strict=True):
        if want is None:
            out.append(None)
            continue
        numbers = m.extract_numbers(_text(c))
        if not numbers:
            out.append(0.0)
            continue
        error = abs(numbers[-1] - float(want)) / max(abs(float(want)), NUMERIC_ABS_TOL)
        out.append(max(0.0, 1.0 - error))
    return out


def citation_reward(prompts: Sequence, completions: Sequence, gold_passages: Sequence[list[int]] | None = None,
                    n_passages: Sequence[int] | None = None, **_) -> list[float | None]:
    """On grounded prompts: 1 when the answer cites a passage that holds the reference answer; 0 when it cites
    none, only others, or numbers no passage has."""
    gold = gold_passages or [[]] * len(completions)
    counts = n_passages or [0] * len(completions)
    out: list[float | None] = []
    for c, want, n in zip(completions, gold, counts, strict=True):
        if not n or not want:
            out.append(None)
            continue
        _, cited, invalid = check_citations(_text(c), int(n))
        out.append(float(bool(set(cited) & set(want)) and not invalid))
    return out


def stop_reward(prompts: Sequence, completions: Sequence, completion_ids: Sequence[Sequence[int]] | None = None,
                end_of_turn_id: Sequence[int] | None = None, **_) -> list[float | None]:
    """1 when the completion ends its turn (its last token is the end-of-turn token), 0 when it ran out."""
    if completion_ids is None or end_of_turn_id is None:
        return [None] * len(completions)
    return [float(bool(ids) and int(ids[-1]) == int(eot)) for ids, eot in zip(completion_ids, end_of_turn_id,
                                                                              strict=True)]


REWARDS = {"numeric": numeric_reward, "numeric_close": numeric_close_reward, "citation": citation_reward,
           "stop": stop_reward}
