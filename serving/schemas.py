"""Request/response models of both APIs. Bounds come from `serve.*` limits, so the models are built per app
(`build_schemas(limits)`) and /docs shows the limits the server really enforces."""

# No `from __future__ import annotations`: the per-app bounds below are local objects pydantic must see.
from types import SimpleNamespace
from typing import Annotated, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, model_validator

from serving.settings import Limits
from serving.tools import MAX_PARALLEL_CALLS
from stages.inference.logprobs import MAX_TOP_LOGPROBS
from stages.inference.types import PENALTY_LAST_N

EXAMPLE_PROMPT = "What are the first-line treatments for hypertension?"
# OpenAI fields this server does not implement yet: accepted only with a value that asks for nothing.
UNSUPPORTED_FIELD = "not supported by this server; remove the field (it is refused, not ignored)"
NO_OP_VALUES: dict[str, tuple] = {
    "functions": (None, []), "function_call": (None, "none"),
    "logit_bias": (None, {}), "best_of": (None, 1), "suffix": (None, ""),
    "modalities": (None, ["text"]),
}
EXAMPLE_DOCS = ["ACE inhibitors and thiazide diuretics are first-line treatments for hypertension.",
                "Consideration is required for a contract to be binding."]


class GenerateResponse(BaseModel):
    generated_text: str
    prompt: str
    tokens_generated: int
    prompt_tokens: int
    finish_reason: Literal["stop", "length"]
    domain: str | None = Field(None, description="the domain whose model answered (null: the base model)")
    routing: dict[str, float] | None = Field(None, description="domain=auto: each domain's similarity to the prompt")


class BatchGenerateResponse(BaseModel):
    results: list[GenerateResponse]
    total_tokens_generated: int
    total_prompts: int = Field(description="the number of prompts (= len(results))")


class RerankResult(BaseModel):
    document: str
    score: float = Field(description="relevance in 0..1 (cross-encoder: probability; bi-encoder: cosine mapped)")
    rank: int = Field(description="1 = most relevant")
    original_index: int


class RerankResponse(BaseModel):
    query: str
    results: list[RerankResult]
    reranker: str = Field(description="cross-encoder, or bi-encoder when the fallback is serving")


class Citation(BaseModel):
    number: int = Field(description="the [n] the answer cites it by")
    doc_id: str
    title: str
    chunk: str = Field(description="the passage's text, as given to the model")
    score: float = Field(description="the retrieval score citations are ordered by: reciprocal rank fusion of "
                                     "BM25, embeddings and (when reranked) the reranker")
    rerank_score: float | None = Field(None, description="the reranker's relevance in 0..1; null when not reranked")


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class RerankV1Document(BaseModel):
    text: str


class RerankV1Result(BaseModel):
    index: int
    relevance_score: float
    document: RerankV1Document | None = None


class RerankV1Response(BaseModel):
    model: str
    results: list[RerankV1Result]


def _numeric(annotation) -> bool:
    if annotation in (int, float):
        return True
    return any(_numeric(arg) for arg in get_args(annotation))


class Request(BaseModel):
    """Base of the request models: pydantic's lax mode reads true/false as 1/0 in number fields; here a
    boolean in a number field is a 422 (a client bug), while 1.0 for an integer stays valid JSON Schema."""

    @model_validator(mode="before")
    @classmethod
    def _no_booleans_for_numbers(cls, data):
        if isinstance(data, dict):
            for name, value in data.items():
                field = cls.model_fields.get(name)
                if isinstance(value, bool) and field is not None and _numeric(field.annotation):
                    raise ValueError(f"{name}: expected a number, got a boolean")
        return data


def check_batch_tokens(n_prompts: int, max_tokens: int, limits: Limits) -> None:
    """One batch request must be able to finish within the request timeout: bound prompts x max_tokens."""
    if n_prompts * max_tokens > limits.max_batch_tokens:
        raise ValueError(f"{n_prompts} prompts x max_tokens {max_tokens} = {n_prompts * max_tokens} new tokens, "
                         f"more than serve.max_batch_tokens ({limits.max_batch_tokens}); lower max_tokens or "
                         "send fewer prompts")


def build_schemas(limits: Limits, ask_top_k: int = 1, default_repeat_penalty: float = 1.0) -> SimpleNamespace:
    """Request models whose bounds are the configured limits (violations -> 422 naming the field); retrieval's
    default passage count is serve.ask_top_k, the default repeat_penalty serve.repeat_penalty."""
    prompt_str = Annotated[str, Field(min_length=1, max_length=limits.max_prompt_chars)]
    document_str = Annotated[str, Field(max_length=limits.max_document_chars)]
    stop_list = Annotated[list[Annotated[str, Field(min_length=1, max_length=64)]], Field(max_length=4)]
    tokens_int = Annotated[int, Field(ge=1, le=limits.max_tokens_limit,
                                      description=f"new tokens to generate, at most {limits.max_tokens_limit}")]
    default_max_tokens = min(128, limits.max_tokens_limit)

    class SamplingFields(Request):
        max_tokens: tokens_int = default_max_tokens
        temperature: float = Field(0.7, ge=0.0, le=2.0, description="0 = greedy (deterministic)")
        top_p: float = Field(0.9, gt=0.0, le=1.0)
        top_k: int = Field(50, ge=0, le=1000, description="0 = no top-k cut")
        stop: stop_list = []
        seed: int | None = Field(None, ge=0, le=2**32 - 1)
        min_p: float = Field(0.0, ge=0.0, le=1.0, description="drop tokens below min_p x the top probability")
        repeat_penalty: float = Field(default_repeat_penalty, gt=0.0, le=2.0,
                                      description=f"1 = off; > 1 discourages repeats of the last {PENALTY_LAST_N} generated "
                                                  "tokens (default serve.repeat_penalty)")
        use_chat_template: StrictBool = Field(True, description="wrap the prompt as a user turn of the model's chat "
                                        "template, with the domain system prompt; false = raw completion")
        system_prompt: Annotated[str, Field(max_length=limits.max_prompt_chars)] | None = Field(
            None, description="replaces the configured domain system prompt for this request")
        domain: Annotated[str, Field(min_length=1, max_length=64)] | None = Field(
            None, description="which domain's model answers: a served domain, `base`, or `auto` (the default: the "
                              "nearest domain by embedding); a server without adapters answers with its one model")

    class GenerateRequest(SamplingFields):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"prompt": EXAMPLE_PROMPT, "max_tokens": 64, "temperature": 0.0}]})
        prompt: prompt_str

    class BatchGenerateRequest(SamplingFields):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"prompts": [EXAMPLE_PROMPT, "What is a statute of limitations?"], "max_tokens": 32}]})
        prompts: Annotated[list[prompt_str], Field(min_length=1, max_length=limits.max_batch_size)]

        @model_validator(mode="after")
        def _fits_batch_budget(self):
            check_batch_tokens(len(self.prompts), self.max_tokens, limits)
            return self

    class AskRequest(SamplingFields):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"question": "How is asthma treated?", "top_k": 3, "max_tokens": 96, "temperature": 0.0}]})
        question: prompt_str
        top_k: int = Field(ask_top_k, ge=1, le=10, description="context passages retrieved and shown to the model "
                                                             "(default serve.ask_top_k, what the grounded stage "
                                                             "measures)")

    class RerankRequest(Request):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"query": "How is hypertension treated?", "documents": EXAMPLE_DOCS, "top_k": 1}]})
        query: prompt_str
        documents: Annotated[list[document_str], Field(min_length=1, max_length=limits.max_documents)]
        top_k: int | None = Field(None, ge=1, description="return only the best k (default: all)")

    # Booleans are strict (0/1/"yes" are refused with 422, not guessed). -- OpenAI-compatible ----------------------------------------------------------------------------------
    class StreamOptions(Request):
        include_usage: StrictBool = False

    class OpenAISampling(Request):
        # A field we do not implement is refused (422 naming it), not accepted and ignored: a client asking for
        # tools or logprobs must not get plain text with 200 and believe it was honoured.
        model_config = ConfigDict(extra="forbid")
        model: str | None = Field(None, max_length=256,
                                  description="a model id of GET /v1/models (`domain-llm-<domain>`, the base "
                                              "model's id) or `auto`; any other id is a 404")
        user: str | None = Field(None, max_length=256, description="informational (the caller's end user)")

        @model_validator(mode="before")
        @classmethod
        def _refuse_unimplemented(cls, data):
            if isinstance(data, dict):
                for name, value in data.items():
                    if name in NO_OP_VALUES and value not in NO_OP_VALUES[name]:
                        raise ValueError(f"{name}: {UNSUPPORTED_FIELD}")
                data = {k: v for k, v in data.items() if k not in NO_OP_VALUES}
                if "repetition_penalty" in data:  # vLLM's name (clients written for it, our own upstream engine)
                    value = data.pop("repetition_penalty")
                    if data.setdefault("repeat_penalty", value) != value:
                        raise ValueError("repetition_penalty and repeat_penalty differ; send one of them")
            return data
        temperature: float = Field(1.0, ge=0.0, le=2.0)
        top_p: float = Field(1.0, gt=0.0, le=1.0)
        top_k: int = Field(0, ge=0, le=1000, description="extension; 0 = off")
        stop: Annotated[str, Field(min_length=1, max_length=64)] | stop_list | None = None
        stream: StrictBool = False
        seed: int | None = Field(None, ge=0, le=2**32 - 1)
        n: int = Field(1, ge=1, le=1, description="only 1 is supported")
        stream_options: StreamOptions | None = None
        frequency_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        presence_penalty: float = Field(0.0, ge=-2.0, le=2.0)
        min_p: float = Field(0.0, ge=0.0, le=1.0, description="extension; 0 = off")
        repeat_penalty: float = Field(default_repeat_penalty, gt=0.0, le=2.0,
                                      description=f"extension (llama.cpp; vLLM's `repetition_penalty` is taken as "
                                                  f"the same): 1 = off; over the last {PENALTY_LAST_N} generated "
                                                  "tokens (default serve.repeat_penalty)")

    token_ids = Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(min_length=1, max_length=limits.max_prompt_chars)]

    class CompletionRequest(OpenAISampling):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"model": "auto", "prompt": "Hypertension is", "max_tokens": 16, "temperature": 0}]})
        prompt: prompt_str | Annotated[list[prompt_str], Field(min_length=1, max_length=limits.max_batch_size)] \
            | token_ids | Annotated[list[token_ids], Field(min_length=1, max_length=limits.max_batch_size)] = Field(
                description="text, a list of texts, token ids (the model's own, GET /tokenize), or a list of those")
        max_tokens: Annotated[int, Field(ge=0, le=limits.max_tokens_limit, description=(
            f"new tokens to generate, at most {limits.max_tokens_limit}; 0 only with echo"))] = \
            min(16, limits.max_tokens_limit)
        logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS, description=(
            "log-probability of each token and this many alternatives at each position"))
        echo: StrictBool = Field(False, description="the prompt comes back before the completion (with logprobs: "
                                                     "each prompt token's, as lm-evaluation-harness reads them)")

        @property
        def prompts(self) -> list:
            one = isinstance(self.prompt, str) or (self.prompt and isinstance(self.prompt[0], int))
            return [self.prompt] if one else self.prompt

        @model_validator(mode="after")
        def _fits_batch_budget(self):
            if self.max_tokens == 0 and not self.echo:
                raise ValueError("max_tokens: 0 is only meaningful with echo=true (the prompt's logprobs)")
            if self.echo and self.stream:
                raise ValueError("echo: not with stream=true; send a non-streamed request")
            if len(self.prompts) > 1:
                check_batch_tokens(len(self.prompts), self.max_tokens, limits)
            return self

    class JSONSchemaFormat(Request):
        model_config = ConfigDict(extra="forbid", populate_by_name=True)
        name: str = Field("response", max_length=64)
        description: str | None = Field(None, max_length=1000)
        json_schema: dict = Field(default_factory=dict, alias="schema", description="the JSON Schema to follow")
        strict: StrictBool | None = None

    class ResponseFormat(Request):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"type": "json_schema", "json_schema": {"name": "answer", "schema": {
                "type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}}}]})
        type: Literal["text", "json_object", "json_schema"]
        json_schema: JSONSchemaFormat | None = None

        @model_validator(mode="after")
        def _schema_given(self):
            if self.type == "json_schema" and self.json_schema is None:
                raise ValueError("response_format.json_schema is required with type json_schema")
            return self

    name_str = Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="a function name")]

    class FunctionCallIn(Request):
        model_config = ConfigDict(extra="forbid")
        name: name_str
        arguments: Annotated[str, Field(max_length=limits.max_prompt_chars, description="JSON text")]

    class ToolCallIn(Request):
        model_config = ConfigDict(extra="forbid")
        id: Annotated[str, Field(min_length=1, max_length=128)]
        type: Literal["function"] = "function"
        function: FunctionCallIn

    class ChatMessage(Request):
        model_config = ConfigDict(extra="forbid")  # what is not rendered (name, audio, ...) is refused, not dropped
        role: Literal["system", "user", "assistant", "tool"]
        content: Annotated[str, Field(max_length=limits.max_prompt_chars)] | None = None
        tool_calls: Annotated[list[ToolCallIn], Field(min_length=1, max_length=16)] | None = Field(
            None, description="an assistant turn's calls (history of a tool-calling chat)")
        tool_call_id: Annotated[str, Field(min_length=1, max_length=128)] | None = Field(
            None, description="a tool turn: the id of the call it answers")

        @model_validator(mode="after")
        def _fields_fit_the_role(self):
            if self.tool_calls is not None and self.role != "assistant":
                raise ValueError("tool_calls: only an assistant message has them")
            if (self.tool_call_id is None) == (self.role == "tool"):
                raise ValueError("tool_call_id: a tool message needs one, and only a tool message has one")
            if self.content is None and self.tool_calls is None:
                raise ValueError("content: required (only an assistant message with tool_calls may omit it)")
            return self

    class FunctionDef(Request):
        model_config = ConfigDict(extra="forbid")
        name: name_str
        description: Annotated[str, Field(max_length=4096)] | None = None
        parameters: dict | None = Field(None, description="JSON Schema of the arguments (an object)")
        strict: StrictBool | None = Field(None, description="accepted; calls always follow the schema when "
                                                           "tool_choice is required or names a function")

        @model_validator(mode="after")
        def _parameters_are_an_object(self):
            if self.parameters is not None and self.parameters.get("type", "object") != "object":
                raise ValueError("parameters: the arguments' JSON Schema must have type object")
            return self

    class ToolDef(Request):
        model_config = ConfigDict(extra="forbid")
        type: Literal["function"]
        function: FunctionDef

    class ChosenFunction(Request):
        model_config = ConfigDict(extra="forbid")
        name: name_str

    class NamedToolChoice(Request):
        model_config = ConfigDict(extra="forbid")
        type: Literal["function"]
        function: ChosenFunction

    class RetrievalOption(Request):
        model_config = ConfigDict(extra="forbid")
        top_k: int = Field(ask_top_k, ge=1, le=10, description="passages retrieved and given to the model "
                                                             "(default serve.ask_top_k)")

    class ChatCompletionRequest(OpenAISampling):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"model": "auto", "messages": [{"role": "user", "content": EXAMPLE_PROMPT}],
             "max_tokens": 64, "temperature": 0}]})
        messages: Annotated[list[ChatMessage], Field(min_length=1, max_length=256)]
        max_tokens: tokens_int | None = None
        max_completion_tokens: tokens_int | None = None
        response_format: ResponseFormat | None = None
        tools: Annotated[list[ToolDef], Field(max_length=64)] | None = None
        tool_choice: Literal["auto", "none", "required"] | NamedToolChoice | None = Field(
            None, description="auto (the default with tools), none, required, or {type: function, function: "
                              "{name}}; required and a named function generate the call under a grammar")
        parallel_tool_calls: StrictBool | None = Field(None, description=f"default true: up to "
                                                                         f"{MAX_PARALLEL_CALLS} calls in one answer")
        logprobs: StrictBool = Field(False, description="each generated token's log-probability")
        top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS,
                                         description="with logprobs: this many alternatives at each position")

        @model_validator(mode="after")
        def _top_logprobs_need_logprobs(self):
            if self.top_logprobs and not self.logprobs:
                raise ValueError("top_logprobs: needs logprobs=true")
            return self
        retrieval: RetrievalOption | None = Field(
            None, description="domain-llm extension: answer from the indexed documents; the response then "
                              "carries `citations` (numbered passages) and `invalid_citations`")

    class RerankV1Request(Request):
        model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [
            {"model": "reranker", "query": "How is hypertension treated?", "documents": EXAMPLE_DOCS,
             "top_n": 1, "return_documents": True}]})
        model: str | None = Field(None, max_length=256)
        query: prompt_str
        documents: Annotated[list[document_str | RerankV1Document],
                             Field(min_length=1, max_length=limits.max_documents)]
        top_n: int | None = Field(None, ge=1)
        return_documents: StrictBool = False

    return SimpleNamespace(**{name: obj for name, obj in locals().items() if isinstance(obj, type)})
