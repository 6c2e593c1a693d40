"""The one record schema every data source is normalised into.

A record is a dict:
    id           stable id: "<source>-<domain>-<sha1 of instruction+input+output, 12 hex>"
    domain       healthcare | legal | finance | any user string
    instruction  the question / task
    input        optional context ("" when none)
    output       the reference answer
    source       synthetic | local_file:<name> | huggingface:<name>
    messages     chat rendering: [system?], user (instruction + input), assistant (output)
Sources may add extra keys (e.g. synthetic `fact_id`, `template_id`, `numeric_answer`); they are kept.
"""

from __future__ import annotations

import hashlib

REQUIRED_FIELDS = ("id", "domain", "instruction", "input", "output", "source", "messages")


def record_id(source: str, domain: str, instruction: str, input_text: str, output: str) -> str:
    digest = hashlib.sha1(f"{instruction}\x1f{input_text}\x1f{output}".encode()).hexdigest()[:12]
    return f"{source.split(':')[0]}-{domain}-{digest}"


def user_content(instruction: str, input_text: str) -> str:
    return f"{instruction}\n\n{input_text}" if input_text else instruction


def render_messages(instruction: str, input_text: str, output: str, system_prompt: str | None) -> list[dict]:
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user_content(instruction, input_text)})
    messages.append({"role": "assistant", "content": output})
    return messages


def make_record(domain: str, instruction: str, output: str, source: str, input_text: str = "",
                system_prompt: str | None = None, **extra) -> dict:
    """Build a normalised record; `extra` keys (fact_id, template_id, ...) are kept as they are."""
    record = {
        "id": record_id(source, domain, instruction, input_text, output),
        "domain": domain,
        "instruction": instruction,
        "input": input_text,
        "output": output,
        "source": source,
    }
    record.update(extra)
    record["messages"] = render_messages(instruction, input_text, output, system_prompt)
    return record


def refresh_messages(record: dict, system_prompt: str | None) -> dict:
    """Re-render `messages` (and `id`) after cleaning changed the text fields."""
    record["id"] = record_id(record["source"], record["domain"], record["instruction"], record["input"],
                             record["output"])
    record["messages"] = render_messages(record["instruction"], record["input"], record["output"], system_prompt)
    return record


def trained_system_prompt(records: list[dict]) -> str | None:
    """The system prompt a model trained on `records` saw: the most common system message (None: none)."""
    from collections import Counter

    counts = Counter(m[0]["content"] for m in (r.get("messages") or [] for r in records)
                     if m and isinstance(m[0], dict) and m[0].get("role") == "system" and m[0].get("content"))
    return counts.most_common(1)[0][0] if counts else None
