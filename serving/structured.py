"""Structured output: OpenAI's `response_format` as a llama.cpp grammar (GBNF) the sampler enforces.

    grammar_for({"type": "json_schema", "json_schema": {"name": "x", "schema": {...}}})  -> GBNF text
    grammar_for({"type": "json_object"})                                               -> any JSON object
    grammar_for(None) / grammar_for({"type": "text"})                                  -> None

The schema -> grammar translation is llama-cpp-python's (`llama_cpp.llama_grammar.json_schema_to_gbnf`, a port
of llama.cpp's own); its bounded whitespace rule keeps a greedy model from padding JSON with newlines forever.
A schema it cannot translate is the client's to fix: 422 naming the field.
"""

from __future__ import annotations

import json

from fastapi import HTTPException

ANY_OBJECT = {"type": "object"}
# The translator writes a bound like maxLength N as N nested optional groups, and llama.cpp's grammar parser
# recurses into each: bounds and grammar size are kept small enough to parse in milliseconds.
MAX_REPEAT_BOUND = 256
MAX_GRAMMAR_CHARS = 65536
BOUNDS = ("maxLength", "minLength", "maxItems", "minItems", "maxProperties", "minProperties")


def _check_bounds(node, path: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key in BOUNDS and isinstance(value, int | float) and value > MAX_REPEAT_BOUND:
                raise HTTPException(422, f"{path}.{key}={value}: at most {MAX_REPEAT_BOUND} for constrained "
                                         "output; lower it")
            _check_bounds(value, f"{path}.{key}")
    elif isinstance(node, list):
        for i, value in enumerate(node):
            _check_bounds(value, f"{path}[{i}]")


def schema_grammar(schema: dict, field: str) -> str:
    """The GBNF of a JSON Schema; `field` names where the schema came from in a 422 (e.g.
    `response_format.json_schema.schema`, `tools[0].function.parameters`)."""
    from llama_cpp.llama_grammar import json_schema_to_gbnf

    _check_bounds(schema, field)
    try:
        grammar = json_schema_to_gbnf(json.dumps(schema))
    except RecursionError:
        raise HTTPException(422, f"{field}: nested too deeply; simplify it") from None
    except Exception as e:  # the translator asserts/raises on what it does not support (unresolved $ref, ...)
        raise HTTPException(422, f"{field}: cannot be turned into a grammar ({type(e).__name__}: "
                                 f"{str(e)[:200]}); simplify the schema") from None
    if len(grammar) > MAX_GRAMMAR_CHARS:
        raise HTTPException(422, f"{field}: its grammar has {len(grammar)} characters, more than "
                                 f"{MAX_GRAMMAR_CHARS}; simplify the schema")
    return grammar


def grammar_for(response_format: dict | None) -> str | None:
    if not response_format or response_format.get("type") == "text":
        return None
    kind = response_format.get("type")
    if kind == "json_object":
        schema = ANY_OBJECT
    elif kind == "json_schema":
        spec = response_format.get("json_schema") or {}
        schema = spec.get("schema") if isinstance(spec, dict) else None
        if not isinstance(schema, dict):
            raise HTTPException(422, "response_format.json_schema.schema: a JSON Schema object is required")
    else:
        raise HTTPException(422, f"response_format.type={kind!r}: use text, json_object or json_schema")
    return schema_grammar(schema, "response_format.json_schema.schema")
