"""Turn rows of a known data format into normalised records (stages.prepare.records).

Formats and their fields (rename your columns onto these with `data.columns: {field: your_column}`):
    alpaca    instruction, output, [input]
    qa        question, answer, [context]            -> instruction=question, input=context, output=answer
    chat      messages: [{role, content}, ...]
    sharegpt  conversations: [{from, value}, ...]
Every format may carry a `domain` column; rows without one get the configured default domain.

A conversation becomes one example: its last user turn is the instruction, the assistant reply after it the
output, and any earlier turns are kept as `input` ("User: ...\nAssistant: ...") so no context is lost;
system turns are dropped because the stage renders the domain's own system prompt.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from tqdm import tqdm

from stages.errors import StageError
from stages.prepare.records import make_record

FORMAT_FIELDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    # format: (required fields, optional fields)
    "alpaca": (("instruction", "output"), ("input",)),
    "qa": (("question", "answer"), ("context",)),
    "chat": (("messages",), ()),
    "sharegpt": (("conversations",), ()),
}
FORMATS = tuple(FORMAT_FIELDS)
_ROLE_NAMES = {"user": "user", "human": "user", "assistant": "assistant", "gpt": "assistant", "bot": "assistant",
               "model": "assistant", "system": "system"}


@dataclass
class RowContext:
    """What every converted row shares; `origin` names the file or dataset in error messages."""

    origin: str
    source: str
    default_domain: str
    system_prompt: str | None


def apply_column_mapping(row: dict, columns: Mapping[str, str], origin: str, location: str) -> dict:
    """Rename the user's columns onto the format's field names ({field: your_column})."""
    if not columns:
        return row
    mapped = dict(row)
    for field, column in columns.items():
        if column not in row:
            raise StageError(f"{origin}: {location}: column {column!r} (mapped to field {field!r} by "
                             f"data.columns) is missing; columns found: {', '.join(map(str, row)) or 'none'}")
        mapped[field] = mapped.pop(column)
    return mapped


def detect_format(columns: Iterable[str], origin: str) -> str:
    """Pick the format whose required fields are all present, preferring chat/sharegpt, then alpaca, qa."""
    present = set(columns)
    for name in ("chat", "sharegpt", "alpaca", "qa"):
        if set(FORMAT_FIELDS[name][0]) <= present:
            return name
    wanted = "; ".join(f"{n}: {', '.join(f[0])}" for n, f in FORMAT_FIELDS.items())
    raise StageError(f"{origin}: cannot detect the data format from columns {sorted(present)}; expected one of "
                     f"[{wanted}] or map your columns with data.columns={{field: your_column}}")


def text_field(row: dict, field: str, ctx: RowContext, location: str, required: bool) -> str:
    """A text cell as str. Missing optional or null cells give "" (empty rows are dropped and counted later);
    numbers are written as text (CSV/Parquet infer them); lists, dicts and booleans are wrong types."""
    if field not in row:
        if required:
            raise StageError(f"{ctx.origin}: {location}: missing required field {field!r}; columns found: "
                             f"{', '.join(map(str, row))}. Map yours with data.columns={{{field}: your_column}}")
        return ""
    value = row[field]
    if value is None or (isinstance(value, float) and value != value):  # null / NaN
        return ""
    if isinstance(value, str):
        return value
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    raise StageError(f"{ctx.origin}: {location}: field {field!r} must be text, got {type(value).__name__}")


def row_domain(row: dict, ctx: RowContext, location: str) -> str:
    domain = text_field(row, "domain", ctx, location, required=False).strip()
    return domain or ctx.default_domain


def conversation_to_example(turns: object, field: str, keys: tuple[str, str], ctx: RowContext,
                            location: str) -> tuple[str, str, str]:
    """(instruction, input, output) from a list of turns; `keys` = (role key, text key)."""
    role_key, text_key = keys
    if not isinstance(turns, list):
        raise StageError(f"{ctx.origin}: {location}: field {field!r} must be a list of turns, "
                         f"got {type(turns).__name__}")
    normalised = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or role_key not in turn or text_key not in turn:
            raise StageError(f"{ctx.origin}: {location}: field {field!r} turn {i} must be an object with "
                             f"{role_key!r} and {text_key!r}")
        role = _ROLE_NAMES.get(str(turn[role_key]).lower())
        if role is None:
            raise StageError(f"{ctx.origin}: {location}: field {field!r} turn {i} has unknown role "
                             f"{turn[role_key]!r}; use one of {', '.join(sorted(_ROLE_NAMES))}")
        if not isinstance(turn[text_key], str):
            raise StageError(f"{ctx.origin}: {location}: field {field!r} turn {i} {text_key!r} must be text, "
                             f"got {type(turn[text_key]).__name__}")
        if role != "system":
            normalised.append((role, turn[text_key]))
    last_assistant = max((i for i, (role, _) in enumerate(normalised) if role == "assistant"), default=None)
    if last_assistant is None or last_assistant == 0 or normalised[last_assistant - 1][0] != "user":
        raise StageError(f"{ctx.origin}: {location}: field {field!r} needs a user turn followed by an "
                         "assistant turn")
    history = normalised[: last_assistant - 1]
    input_text = "\n".join(f"{role.capitalize()}: {text}" for role, text in history)
    return normalised[last_assistant - 1][1], input_text, normalised[last_assistant][1]


def row_to_record(row: dict, fmt: str, ctx: RowContext, location: str) -> dict:
    if fmt == "alpaca":
        instruction = text_field(row, "instruction", ctx, location, required=True)
        input_text = text_field(row, "input", ctx, location, required=False)
        output = text_field(row, "output", ctx, location, required=True)
    elif fmt == "qa":
        instruction = text_field(row, "question", ctx, location, required=True)
        input_text = text_field(row, "context", ctx, location, required=False)
        output = text_field(row, "answer", ctx, location, required=True)
    elif fmt in ("chat", "sharegpt"):
        field, keys = ("messages", ("role", "content")) if fmt == "chat" else ("conversations", ("from", "value"))
        if field not in row:
            raise StageError(f"{ctx.origin}: {location}: missing required field {field!r}")
        instruction, input_text, output = conversation_to_example(row[field], field, keys, ctx, location)
    else:
        raise StageError(f"data.format={fmt!r} is not one of {', '.join(FORMATS)} or auto")
    return make_record(row_domain(row, ctx, location), instruction, output, ctx.source, input_text=input_text,
                       system_prompt=ctx.system_prompt)


def rows_to_records(rows: list[tuple[str, dict]], fmt: str, columns: Mapping[str, str],
                    ctx: RowContext) -> tuple[list[dict], str]:
    """Convert (location, row) pairs; returns the records and the format used (detected when `auto`)."""
    mapped = [(loc, apply_column_mapping(row, columns, ctx.origin, loc)) for loc, row in rows]
    if fmt == "auto":
        fmt = detect_format(mapped[0][1].keys(), ctx.origin)
    elif fmt not in FORMAT_FIELDS:
        raise StageError(f"data.format={fmt!r} is not one of {', '.join(FORMATS)} or auto")
    records = [row_to_record(row, fmt, ctx, loc)
               for loc, row in tqdm(mapped, desc=f"convert {fmt}", unit="row", disable=len(mapped) < 20000)]
    return records, fmt
