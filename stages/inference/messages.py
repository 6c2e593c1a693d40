"""Small facts about OpenAI-style message lists, shared by serving, the grounded prompt and the stages that
read training chats (one definition of "the question" instead of one per caller).

    last_user_turn([{"role": "system", ...}, {"role": "user", "content": "Why?"}])   # "Why?"
"""

from __future__ import annotations


def last_user_index(messages: list[dict]) -> int | None:
    """Position of the last user message, or None when there is none."""
    return next((i for i in range(len(messages) - 1, -1, -1) if messages[i].get("role") == "user"), None)


def last_user_turn(messages: list[dict]) -> str | None:
    """The content of the last user message (the question a chat asks now), or None."""
    index = last_user_index(messages)
    return None if index is None else messages[index]["content"]
