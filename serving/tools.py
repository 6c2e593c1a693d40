"""OpenAI tool calling on /v1/chat/completions: `tools`, `tool_choice`, `parallel_tool_calls`.

    plan = plan_tools(contract.template, body.tools, body.tool_choice, body.parallel_tool_calls)
    messages, tools = plan.render_inputs(messages)   # what the model's chat template is given
    params.grammar = plan.grammar()                    # required / a named function: the call is constrained
    calls = plan.parse(generation.text)                # -> [ToolCall] or None (the answer is text)
    stream = plan.stream(); stream.feed(piece) -> [tool_calls delta entries]; stream.finish() -> the rest

How a model writes a call is a small registered syntax, picked from its chat template:
- `hermes`: `<tool_call>\n{"name": ..., "arguments": {...}}\n</tool_call>`, one block per call (Qwen2/2.5,
  Hermes, and any template that writes `<tool_call>`).
- `json` (every other template): a JSON array of `{"name": ..., "arguments": {...}}` objects, or one such object
  with `parallel_tool_calls: false`.
A template that renders `tools` itself gets the tool definitions and the `tool`/`tool_calls` messages as they
are. Any other template (SmolLM2's) gets the documented fallback: the definitions and the call syntax appended to
the system message, assistant `tool_calls` written as that syntax, and `tool` results as user turns.

With `tool_choice` `required` or a named function the call is generated under a grammar built from the
functions' JSON Schemas (the structured-output translator), so it always parses. With `auto` the model decides;
an answer that parses as calls of the offered functions is returned as calls, anything else as text. `none`
renders the tools but returns text.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass, field

from fastapi import HTTPException

from serving.structured import schema_grammar

MAX_PARALLEL_CALLS = 8  # calls in one answer when parallel calls are allowed (the grammar's bound)
HERMES_OPEN, HERMES_CLOSE = "<tool_call>", "</tool_call>"
FALLBACK_HEADER = "You can call these functions (JSON Schemas of their arguments):"


@dataclass
class ToolCall:
    name: str
    arguments: str  # JSON text, as OpenAI sends it
    id: str = field(default_factory=lambda: f"call_{uuid.uuid4().hex[:24]}")

    def openai(self, index: int | None = None) -> dict:
        call = {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}
        return call if index is None else {"index": index, **call}


def _call_schema(function: dict) -> dict:
    parameters = function.get("parameters") or {"type": "object", "properties": {}}
    return {"type": "object", "properties": {"name": {"const": function["name"]}, "arguments": parameters},
            "required": ["name", "arguments"], "additionalProperties": False}


def _json_value_end(text: str, start: int) -> int | None:
    """Where the JSON object/array starting at text[start] ends (exclusive), or None if it is not closed yet."""
    depth, in_string, escaped = 0, False, False
    for i in range(start, len(text)):
        c = text[i]
        if in_string:
            escaped, in_string = (False, True) if escaped else (c == "\\", c != '"')
        elif c == '"':
            in_string = True
        elif c in "{[":
            depth += 1
        elif c in "}]":
            depth -= 1
            if depth == 0:
                return i + 1
    return None


# The head of one call as the grammar writes it (name first); `auto` answers that differ parse at the end.
_CALL_HEAD = re.compile(r'\{\s*"name"\s*:\s*"((?:[^"\\]|\\.)*)"\s*,\s*"(?:arguments|parameters)"\s*:\s*')


class ToolCallStream:
    """Streamed tool calls: text pieces in, OpenAI `delta.tool_calls` entries out. A call's entry (id, name,
    empty arguments) goes out once its name is complete, then its arguments as they are written."""

    def __init__(self, plan: ToolPlan):
        self.plan, self.text = plan, ""
        self.calls: list[ToolCall] = []
        self._sent: list[int] = []  # characters of each call's arguments already sent

    def _partial_calls(self) -> list[tuple[str, str]]:
        found, at = [], 0
        while (head := _CALL_HEAD.search(self.text, at)) is not None:
            start = head.end()
            end = _json_value_end(self.text, start) if start < len(self.text) else None
            found.append((json.loads(f'"{head.group(1)}"'), self.text[start:end]))
            if end is None:
                break
            at = end
        return found

    def feed(self, piece: str) -> list[dict]:
        self.text += piece
        deltas = []
        names = {f["name"] for f in self.plan.functions}
        for i, (name, arguments) in enumerate(self._partial_calls()):
            if name not in names:  # not a call of an offered function: nothing goes out as a call
                break
            if i == len(self.calls):
                self.calls.append(ToolCall(name, ""))
                self._sent.append(0)
                deltas.append({"index": i, "id": self.calls[i].id, "type": "function",
                               "function": {"name": name, "arguments": ""}})
            if len(arguments) > self._sent[i]:
                deltas.append({"index": i, "function": {"arguments": arguments[self._sent[i]:]}})
                self._sent[i] = len(arguments)
        return deltas

    def finish(self) -> list[ToolCall] | None:
        """The calls of the whole answer (None: it is text); the streamed calls keep their ids."""
        calls = self.plan.parse(self.text)
        if calls is None:
            return None
        for streamed, call in zip(self.calls, calls, strict=False):
            call.id = streamed.id
        return calls


@dataclass
class ToolPlan:
    tools: list[dict]   # OpenAI tool definitions ({"type": "function", "function": {...}})
    choice: str         # auto | none | required | the name of the function to call
    parallel: bool
    syntax: str         # hermes | json
    template_renders_tools: bool

    @property
    def functions(self) -> list[dict]:
        return [t["function"] for t in self.tools]

    @property
    def constrained(self) -> bool:
        return self.choice not in ("auto", "none")

    # -- the prompt -------------------------------------------------------------------------------------
    def _written(self, calls: list[dict]) -> str:
        """Calls (OpenAI `tool_calls`) in this plan's syntax, as the model should write them."""
        objects = [{"name": c["function"]["name"], "arguments": _arguments_value(c["function"]["arguments"])}
                   for c in calls]
        if self.syntax == "hermes":
            return "\n".join(f"{HERMES_OPEN}\n{json.dumps(o, ensure_ascii=False)}\n{HERMES_CLOSE}" for o in objects)
        return json.dumps(objects if self.parallel or len(objects) > 1 else objects[0], ensure_ascii=False)

    def _instructions(self) -> str:
        definitions = json.dumps([{k: f[k] for k in ("name", "description", "parameters") if k in f}
                                  for f in self.functions], ensure_ascii=False)
        example = self._written([{"function": {"name": "<name>", "arguments": {"<argument>": "<value>"}}}])
        return f"{FALLBACK_HEADER}\n{definitions}\nTo call functions, answer with only this: {example}"

    def render_inputs(self, messages: list[dict]) -> tuple[list[dict], list[dict] | None]:
        """(messages, tools) for the chat template: as they are where the template renders tools, else the
        fallback (definitions in the system message, calls and results as text turns)."""
        if self.template_renders_tools:
            rendered = []
            for m in messages:
                if m.get("tool_calls"):  # templates index arguments as a mapping (transformers' convention)
                    m = {**m, "tool_calls": [{**c, "function": {**c["function"], "arguments": _arguments_value(
                        c["function"]["arguments"])}} for c in m["tool_calls"]]}
                rendered.append({k: v for k, v in m.items() if v is not None})
            return rendered, self.tools
        names = {c["id"]: c["function"]["name"] for m in messages for c in m.get("tool_calls") or []}
        out = []
        for m in messages:
            if m["role"] == "tool":
                name = names.get(m.get("tool_call_id"), m.get("tool_call_id") or "a function")
                out.append({"role": "user", "content": f"Result of {name}: {m['content'] or ''}"})
            elif m["role"] == "assistant" and m.get("tool_calls"):
                text = "\n".join(t for t in (m.get("content"), self._written(m["tool_calls"])) if t)
                out.append({"role": "assistant", "content": text})
            else:
                out.append({"role": m["role"], "content": m.get("content") or ""})
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{self._instructions()}"}
        else:
            out.insert(0, {"role": "system", "content": self._instructions()})
        return out, None

    # -- the answer -------------------------------------------------------------------------------------
    def grammar(self) -> str | None:
        """The GBNF the answer must match: only for `required` and a named function."""
        if not self.constrained:
            return None
        functions = [f for f in self.functions if self.choice in ("required", f["name"])]
        schemas = [_call_schema(f) for f in functions]
        one = schemas[0] if len(schemas) == 1 else {"anyOf": schemas}
        if self.syntax == "json":
            schema = {"type": "array", "items": one, "minItems": 1, "maxItems": MAX_PARALLEL_CALLS} \
                if self.parallel else one
            return schema_grammar(schema, "tools[].function.parameters")
        call = schema_grammar(one, "tools[].function.parameters")
        # The object grammar's root becomes one call; the answer is one or more tagged calls.
        call = re.sub(r"^root ::=", "call ::=", call, flags=re.M)
        block = f'"{HERMES_OPEN}\\n" call "\\n{HERMES_CLOSE}"'
        more = f' ("\\n" {block}){{0,{MAX_PARALLEL_CALLS - 1}}}' if self.parallel else ""
        return f"root ::= {block}{more}\n{call}"

    def parse(self, text: str) -> list[ToolCall] | None:
        """The calls an answer makes, or None when it is not (only) calls of the offered functions."""
        if self.choice == "none":
            return None
        text = text.strip()
        if self.syntax == "hermes":
            blocks = re.findall(rf"{re.escape(HERMES_OPEN)}\s*(.*?)\s*{re.escape(HERMES_CLOSE)}", text, re.S)
            rest = re.sub(rf"{re.escape(HERMES_OPEN)}.*?{re.escape(HERMES_CLOSE)}", "", text, flags=re.S)
            if not blocks or rest.strip():
                return None
            objects = [_loads(b) for b in blocks]
        else:
            value = _loads(text)
            objects = value if isinstance(value, list) else [value]
        names = {f["name"] for f in self.functions}
        calls = []
        for o in objects:
            if not isinstance(o, dict) or o.get("name") not in names:
                return None
            arguments = o.get("arguments", o.get("parameters", {}))
            if isinstance(arguments, str):  # some models write the arguments as a JSON string
                arguments = _loads(arguments)
            if not isinstance(arguments, dict):
                return None
            calls.append(ToolCall(o["name"], json.dumps(arguments, ensure_ascii=False)))
        if not calls or (len(calls) > 1 and not self.parallel):
            return None
        return calls

    def stream(self) -> ToolCallStream:
        return ToolCallStream(self)

    def auto_mode(self, text: str) -> str:
        """Streaming with `auto`: is an answer starting with `text` a call ("calls"), text ("text"), or not
        known yet ("wait": hold it back)?"""
        head = text.lstrip()
        if self.choice == "none":
            return "text"
        if self.syntax == "hermes":
            if head.startswith(HERMES_OPEN):
                return "calls"
            return "wait" if HERMES_OPEN.startswith(head) else "text"
        if not head:
            return "wait"
        return "calls" if head[0] in "[{" else "text"


def _loads(text: str):
    try:
        return json.loads(text)
    except (json.JSONDecodeError, TypeError):
        return None


def _arguments_value(arguments):
    """OpenAI sends arguments as a JSON string; templates and our own syntax write them as an object."""
    if isinstance(arguments, str):
        value = _loads(arguments)
        return value if isinstance(value, dict) else arguments
    return arguments


def syntax_of(template: str | None) -> tuple[str, bool]:
    """(call syntax, whether the template renders `tools` itself) read off a chat template."""
    template = template or ""
    renders = "tools" in template and "tool_call" in template
    return ("hermes" if HERMES_OPEN in template else "json"), renders


def plan_tools(template: str | None, tools: list[dict] | None, tool_choice, parallel: bool | None) -> ToolPlan | None:
    """The plan for one request, or None without tools. 422 naming the field for a choice that cannot be met."""
    if not tools:
        if tool_choice not in (None, "none", "auto"):
            raise HTTPException(422, "tool_choice: needs tools; send the functions in `tools`")
        return None
    names = [t["function"]["name"] for t in tools]
    if len(set(names)) != len(names):
        raise HTTPException(422, "tools: function names must be unique")
    if isinstance(tool_choice, dict):
        choice = tool_choice["function"]["name"]
        if choice not in names:
            raise HTTPException(422, f"tool_choice.function.name: {choice!r} is not one of tools ({names})")
    else:
        choice = tool_choice or "auto"
    syntax, renders = syntax_of(template)
    return ToolPlan(tools, choice, True if parallel is None else parallel, syntax, renders)
