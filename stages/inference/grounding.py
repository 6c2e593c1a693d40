"""The grounded-answer prompt: numbered passages before the question, an instruction to answer from them and cite
by number, and the check of the citations in the answer. Shared by the server (/api/v1/ask, the chat
`retrieval` extension) and the grounded@<domain> stages, so what is measured is what is served.

    messages = grounded_messages([{"role": "user", "content": "How is gout treated?"}],
                                 [Passage("Gout", "Acute gout is treated with ...")])
    answer, cited, invalid = check_citations("Use NSAIDs [1][3].", available=1)   # -> ("Use NSAIDs [1].", [1], [3])
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from stages.inference.messages import last_user_index

CITATION = re.compile(r"\[(\d{1,3})\]")
GROUNDING = ("Answer the question using only the numbered context passages. Cite the passages you use by their "
             "number in square brackets, like [1]. If the passages do not contain the answer, say so.")


@dataclass(frozen=True)
class Passage:
    title: str
    text: str


def grounded_messages(messages: list[dict], passages: list[Passage]) -> list[dict]:
    """The conversation with the grounding instruction added to its system message (one is made if absent)
    and the passages, numbered from 1 in the given order, put before the last user turn's question."""
    context = "\n\n".join(f"[{n}] {p.title}: {p.text}" for n, p in enumerate(passages, start=1))
    out = [dict(m) for m in messages]
    if out and out[0]["role"] == "system":
        out[0]["content"] = f"{out[0]['content']}\n\n{GROUNDING}"
    else:
        out.insert(0, {"role": "system", "content": GROUNDING})
    last_user = last_user_index(out)
    out[last_user]["content"] = f"Context:\n{context}\n\nQuestion: {out[last_user]['content']}"
    return out


def check_citations(answer: str, available: int) -> tuple[str, list[int], list[int]]:
    """(answer without citations to nothing, cited numbers that exist, numbers that do not)."""
    cited, invalid = [], []
    for match in CITATION.finditer(answer):
        n = int(match.group(1))
        (cited if 1 <= n <= available else invalid).append(n)
    if invalid:
        answer = _tidy(CITATION.sub(lambda m: m.group(0) if 1 <= int(m.group(1)) <= available else "", answer))
    return answer, sorted(set(cited)), sorted(set(invalid))


def strip_citations(answer: str) -> str:
    """The answer's words without its [n] markers (for comparing with a reference answer)."""
    return _tidy(CITATION.sub("", answer))


def _tidy(text: str) -> str:
    """No double spaces or space before punctuation where a marker was removed ("ash [9]." -> "ash.")."""
    return re.sub(r"[ \t]+([.,;:!?])", r"\1", re.sub(r"[ \t]{2,}", " ", text)).strip()
