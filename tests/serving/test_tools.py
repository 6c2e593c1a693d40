"""Tool calling on /v1/chat/completions with the official `openai` client and LangChain against a real server
(the embedded SmolLM2 GGUF, whose template knows no tools: the documented fallback), and the `hermes` syntax of
templates that write `<tool_call>` (Qwen2.5's) rendered and parsed without a server."""

from __future__ import annotations

import json

import httpx
import openai
import pytest

from serving.tools import FALLBACK_HEADER, plan_tools
from stages.inference.chat import ChatContract
from tests.serving.conftest import start_thread_server

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city today.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]},
                                                    "unit": {"type": "string", "enum": ["C", "F"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "enum": ["Paris", "Rome", "Oslo"]}},
                   "required": ["city"], "additionalProperties": False}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]


@pytest.fixture(scope="module")
def served(gguf_overrides):
    server = start_thread_server(*gguf_overrides, "serve.rerank=false")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def client(served):
    return openai.OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0)


@pytest.fixture(scope="module")
def base(client) -> str:
    return client.models.list().data[0].id  # the base model (the published model also serves a domain)


def test_required_gives_a_call_that_follows_the_schema(client, base):
    response = client.chat.completions.create(model=base, messages=ASK, tools=[WEATHER, TIME],
                                              tool_choice="required", max_tokens=96, temperature=0)
    choice = response.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls, choice
    for call in choice.message.tool_calls:
        arguments = json.loads(call.function.arguments)
        assert call.type == "function" and call.id.startswith("call_")
        assert call.function.name in ("get_weather", "get_time")
        assert arguments["city"] in ("Paris", "Rome", "Oslo")
        assert set(arguments) == ({"city", "unit"} if call.function.name == "get_weather" else {"city"})


def test_a_named_function_is_the_one_called_and_no_parallel_gives_one_call(client, base):
    response = client.chat.completions.create(
        model=base, messages=ASK, tools=[WEATHER, TIME], max_tokens=96, temperature=0,
        tool_choice={"type": "function", "function": {"name": "get_time"}}, parallel_tool_calls=False)
    [call] = response.choices[0].message.tool_calls
    assert call.function.name == "get_time" and set(json.loads(call.function.arguments)) == {"city"}


def test_streamed_deltas_reassemble_into_the_unstreamed_calls(client, base):
    kwargs = dict(model=base, messages=ASK, tools=[WEATHER, TIME], tool_choice="required", max_tokens=96,
                  temperature=0)
    whole = client.chat.completions.create(**kwargs).choices[0].message.tool_calls
    calls: dict[int, dict] = {}
    finish, n_argument_deltas = None, 0
    for chunk in client.chat.completions.create(**kwargs, stream=True):
        choice = chunk.choices[0]
        finish = choice.finish_reason or finish
        assert not choice.delta.content
        for delta in choice.delta.tool_calls or []:
            call = calls.setdefault(delta.index, {"id": None, "name": "", "arguments": ""})
            call["id"] = delta.id or call["id"]
            if delta.function.name:
                call["name"] += delta.function.name
            if delta.function.arguments:
                n_argument_deltas += 1
                call["arguments"] += delta.function.arguments
    assert finish == "tool_calls"
    assert [(c["name"], json.loads(c["arguments"])) for c in calls.values()] == \
        [(c.function.name, json.loads(c.function.arguments)) for c in whole]
    assert all(c["id"].startswith("call_") for c in calls.values())
    assert n_argument_deltas > len(calls), "the arguments come as they are generated, in several pieces"


def test_a_conversation_with_calls_and_results_goes_on(client, base):
    call = client.chat.completions.create(model=base, messages=ASK, tools=[WEATHER], tool_choice="required",
                                          max_tokens=96, temperature=0).choices[0].message
    history = [*ASK, call.model_dump(exclude_none=True),
               *({"role": "tool", "tool_call_id": c.id, "content": '{"temperature": 18}'} for c in call.tool_calls)]
    answer = client.chat.completions.create(model=base, messages=history, tools=[WEATHER], tool_choice="none",
                                            max_tokens=16, temperature=0).choices[0]
    assert answer.message.tool_calls is None and answer.message.content
    assert answer.finish_reason in ("stop", "length")


def test_auto_returns_text_or_a_parsed_call_and_none_returns_text(served, base):
    for choice in ("auto", "none"):
        body = {"model": base, "messages": ASK, "tools": [WEATHER], "tool_choice": choice, "max_tokens": 48,
                "temperature": 0}
        answer = httpx.post(f"{served.url}/v1/chat/completions", json=body, timeout=60).json()["choices"][0]
        plan = plan_tools(None, [WEATHER], choice, None)
        text = answer["message"]["content"]
        if answer["message"].get("tool_calls"):
            assert choice == "auto" and answer["finish_reason"] == "tool_calls"
        else:
            assert text and plan.parse(text) is None and answer["finish_reason"] != "tool_calls"
        streamed = httpx.post(f"{served.url}/v1/chat/completions", json={**body, "stream": True}, timeout=60)
        chunks = [json.loads(line[6:]) for line in streamed.text.splitlines() if line.startswith("data: {")]
        content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
        if text is not None:
            assert content == text, "auto streams the same text (held back only while it could be a call)"


@pytest.mark.parametrize("body, message", [
    ({"tool_choice": "required"}, "tool_choice: needs tools"),
    ({"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
     "tool_choice.function.name: 'nope' is not one of tools"),
    ({"tools": [WEATHER, WEATHER]}, "tools: function names must be unique"),
    ({"tools": [{"type": "function", "function": {"name": "bad name"}}]}, "pattern"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {"type": "array"}}}]},
     "must have type object"),
    ({"tools": [{"type": "function", "function": {"name": "f", "parameters": {
        "type": "object", "properties": {"x": {"type": "string", "maxLength": 100000}}}}}],
      "tool_choice": "required"}, "maxLength=100000: at most 256"),
    ({"tools": [WEATHER], "tool_choice": "required", "response_format": {"type": "json_object"}},
     "cannot be combined"),
    ({"messages": [{"role": "tool", "content": "x"}]}, "tool_call_id: a tool message needs one"),
    ({"messages": [{"role": "user", "content": "x", "tool_calls": [
        {"id": "1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]}]}, "only an assistant"),
])
def test_tool_requests_that_cannot_be_met_are_422_naming_the_field(served, base, body, message):
    response = httpx.post(f"{served.url}/v1/chat/completions", timeout=30,
                          json={"model": base, "messages": ASK, "max_tokens": 4, **body})
    assert response.status_code == 422, response.text
    assert message in response.text


def test_the_fallback_writes_definitions_calls_and_results_as_text():
    plan = plan_tools("{{ messages }}", [WEATHER], "auto", False)
    call = {"id": "call_1", "type": "function", "function": {"name": "get_weather",
                                                             "arguments": '{"city": "Rome", "unit": "C"}'}}
    messages, tools = plan.render_inputs([{"role": "user", "content": "Weather in Rome?"},
                                          {"role": "assistant", "content": "", "tool_calls": [call]},
                                          {"role": "tool", "tool_call_id": "call_1", "content": "21"}])
    assert tools is None and messages[0]["role"] == "system" and FALLBACK_HEADER in messages[0]["content"]
    assert messages[2] == {"role": "assistant", "content": '{"name": "get_weather", "arguments": '
                                                           '{"city": "Rome", "unit": "C"}}'}
    assert messages[3] == {"role": "user", "content": "Result of get_weather: 21"}
    [parsed] = plan.parse(messages[2]["content"])
    assert (parsed.name, json.loads(parsed.arguments)) == ("get_weather", {"city": "Rome", "unit": "C"})
    assert plan.parse("It is sunny.") is None and plan.parse('{"name": "other", "arguments": {}}') is None


# A template in the style of Qwen2.5's: tools in the system turn, calls as <tool_call> blocks, results as
# <tool_response> in a user turn.
HERMES_TEMPLATE = """{%- if tools %}<|im_start|>system
Tools: {% for tool in tools %}{{ tool | tojson }}{% endfor %}
Call them as <tool_call>{"name": ..., "arguments": ...}</tool_call><|im_end|>
{% endif %}{%- for message in messages %}{%- if message.role == "tool" %}<|im_start|>user
<tool_response>{{ message.content }}</tool_response><|im_end|>
{% elif message.tool_calls %}<|im_start|>assistant
{% for call in message.tool_calls %}<tool_call>{"name": "{{ call.function.name }}", "arguments": \
{{ call.function.arguments | tojson }}}</tool_call>{% endfor %}<|im_end|>
{% else %}<|im_start|>{{ message.role }}
{{ message.content }}<|im_end|>
{% endif %}{%- endfor %}{%- if add_generation_prompt %}<|im_start|>assistant
{% endif %}"""


def test_a_template_that_writes_tool_call_tags_gets_the_tools_and_the_hermes_syntax():
    plan = plan_tools(HERMES_TEMPLATE, [WEATHER, TIME], "required", True)
    assert plan.syntax == "hermes" and plan.template_renders_tools
    call = {"id": "c1", "type": "function", "function": {"name": "get_time", "arguments": '{"city": "Oslo"}'}}
    messages, tools = plan.render_inputs([{"role": "user", "content": "Time in Oslo?"},
                                          {"role": "assistant", "content": "", "tool_calls": [call]},
                                          {"role": "tool", "tool_call_id": "c1", "content": "09:00"}])
    contract = ChatContract(HERMES_TEMPLATE, "", "<|im_end|>", None, False, (0,), ())
    prompt = contract.render(messages, tools=tools)
    assert '"name": "get_weather"' in prompt and '<tool_call>{"name": "get_time", "arguments": {"city": "Oslo"}}' \
        in prompt and "<tool_response>09:00</tool_response>" in prompt
    answer = ('<tool_call>\n{"name": "get_weather", "arguments": {"city": "Rome", "unit": "C"}}\n</tool_call>\n'
              '<tool_call>\n{"name": "get_time", "arguments": {"city": "Rome"}}\n</tool_call>')
    calls = plan.parse(answer)
    assert [(c.name, json.loads(c.arguments)) for c in calls] == [
        ("get_weather", {"city": "Rome", "unit": "C"}), ("get_time", {"city": "Rome"})]
    grammar = plan.grammar()
    assert grammar.startswith('root ::= "<tool_call>\\n" call "\\n</tool_call>"') and "\ncall ::=" in grammar
    from llama_cpp import LlamaGrammar

    LlamaGrammar.from_string(grammar, verbose=False)  # llama.cpp's parser accepts it
    stream, deltas = plan.stream(), []
    for i in range(0, len(answer), 7):
        deltas += stream.feed(answer[i:i + 7])
    streamed = stream.finish()
    assert [d["function"]["name"] for d in deltas if "id" in d] == ["get_weather", "get_time"]
    assert [c.id for c in streamed] == [d["id"] for d in deltas if "id" in d]
    rebuilt = ["".join(d["function"]["arguments"] for d in deltas if d["index"] == i) for i in (0, 1)]
    assert [json.loads(a) for a in rebuilt] == [json.loads(c.arguments) for c in calls]
    # an `auto` answer that looks like a call of a function nobody offered streams no call, and is text
    other = plan_tools(HERMES_TEMPLATE, [WEATHER], "auto", True).stream()
    assert other.feed('<tool_call>\n{"name": "rm_rf", "arguments": {"path": "/"}}\n</tool_call>') == []
    assert other.finish() is None


def test_langchain_bind_tools_and_structured_output(served, base):
    from langchain_openai import ChatOpenAI
    from pydantic import BaseModel, Field

    class Weather(BaseModel):
        """The weather in a city today."""
        city: str = Field(json_schema_extra={"enum": ["Paris", "Rome", "Oslo"]})
        unit: str = Field(json_schema_extra={"enum": ["C", "F"]})

    llm = ChatOpenAI(base_url=f"{served.url}/v1", api_key="unused", model=base, temperature=0, max_tokens=96,
                     max_retries=0)
    message = llm.bind_tools([Weather], tool_choice="any").invoke("What is the weather in Paris?")
    assert message.tool_calls and all(c["name"] == "Weather" for c in message.tool_calls)
    assert all(c["args"]["city"] in ("Paris", "Rome", "Oslo") for c in message.tool_calls)
    for method in ("function_calling", "json_schema"):
        answer = llm.with_structured_output(Weather, method=method).invoke("What is the weather in Paris?")
        assert isinstance(answer, Weather) and answer.city in ("Paris", "Rome", "Oslo"), method
