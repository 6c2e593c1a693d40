"""`openai_upstream` engine: forwards to an OpenAI-compatible server (vLLM, TGI, llama.cpp server) so this API
can sit in front of a cluster. Same `Engine` interface as the local engines; the routes cannot tell.

    domain-llm serve serve.engine=openai_upstream serve.upstream_url=http://10.0.0.5:8000

The upstream applies its own chat template (chat goes to its /v1/chat/completions). Streams are read
line by line; closing a stream closes the upstream connection, which stops the upstream generation.

Per-domain LoRA adapters (`adapters`, read from the same manifests a local server serves) are chosen per request
the way the upstream names them (`adapter_mode`):
- `lora` (llama-server started with `--lora FILE ... --lora-init-without-apply`): its `GET /lora-adapters` lists
  each file with an id; a domain's adapter is the one whose path ends like ours (`legal/adapter.gguf`), and a
  request carries `"lora": [{"id": ID, "scale": 1.0}]` (the base model: `"lora": []`, every adapter off);
- `model` (vLLM `--lora-modules domain-llm-legal=...`, or another domain-llm server): a domain's adapter is the
  upstream model id `domain-llm-<domain>`, sent as the request's `model`;
- `auto`: `lora` when the upstream answers `GET /lora-adapters`, else `model`.
A domain the upstream does not serve stops the start-up with one line naming it: never a base-model answer
under a domain's name.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Generator, Iterator
from pathlib import Path

import httpx

from stages.errors import StageError
from stages.inference.adapters import AdapterFacts
from stages.inference.types import Generation, SamplingParams, ShouldStop, TextStream

ADAPTER_MODES = ("auto", "lora", "model")
DOMAIN_MODEL_PREFIX = "domain-llm-"  # serving/domains.py's model ids; vLLM's --lora-modules names (export vllm)


class UpstreamError(Exception):
    """The upstream server failed or answered with an error; the route answers 502."""


class OpenAIUpstreamEngine:
    name = "openai_upstream"
    max_batch_size = 1  # one request per prompt; the upstream batches concurrent requests itself
    thread_safe = True  # an httpx.Client may be shared by threads; the upstream does its own batching

    def __init__(self, url: str, model: str | None = None, api_key: str | None = None, timeout_s: float = 120.0,
                 concurrent_requests: int = 8, adapters: dict[str, AdapterFacts] | None = None,
                 adapter_mode: str = "auto"):
        self.url = url.rstrip("/")
        self.concurrent_requests = concurrent_requests  # requests forwarded at once (httpx.Client is thread-safe)
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self.client = httpx.Client(base_url=self.url, headers=headers,
                                   timeout=httpx.Timeout(timeout_s, connect=10.0))
        try:
            models = self._json("GET", "/v1/models").get("data") or []
        except UpstreamError as e:
            raise StageError(f"serve.upstream_url={self.url}: upstream not usable ({e}); start it first or "
                             "fix the URL") from None
        ids = [m.get("id") for m in models if isinstance(m, dict)]
        if model is None and not ids:
            raise StageError(f"{self.url}/v1/models lists no model; set serve.upstream_model")
        self.model = model or ids[0]
        self.upstream_models = models
        self.adapters = dict(adapters or {})
        self.adapter_mode, self._adapter_fields = self._map_adapters(adapter_mode, ids)
        self._fields: dict = self._adapter_fields.get(None, {})  # what every request of this view carries
        self.served: dict | None = None  # a view's domain and system prompt (for_adapter)

    # -- adapters -----------------------------------------------------------------------------------------
    def _map_adapters(self, mode: str, ids: list[str]) -> tuple[str | None, dict[str | None, dict]]:
        """(the mode used, {domain or None for the base: the request fields choosing it}). StageError naming
        the first domain the upstream does not serve."""
        if mode not in ADAPTER_MODES:
            raise StageError(f"serve.upstream_adapters={mode!r}: use one of {', '.join(ADAPTER_MODES)}")
        if not self.adapters:
            return None, {}
        listed = None
        if mode in ("auto", "lora"):
            try:
                listed = self._json("GET", "/lora-adapters")
            except UpstreamError as e:
                if mode == "lora":
                    raise StageError(f"serve.upstream_adapters=lora: {self.url}/lora-adapters failed ({e}); is it "
                                     "llama-server? (vLLM: serve.upstream_adapters=model)") from None
        if isinstance(listed, list):
            return "lora", self._lora_fields(listed)
        fields: dict[str | None, dict] = {None: {}}
        for domain, facts in self.adapters.items():
            name = DOMAIN_MODEL_PREFIX + domain
            if name not in ids:
                raise StageError(f"adapter {domain!r} ({facts.path}) is not served by upstream {self.url}: its "
                                 f"/v1/models lists {', '.join(map(str, ids)) or 'nothing'}, not {name!r}; start "
                                 f"it with that adapter (`domain-llm export vllm` prints vLLM's --lora-modules)")
            fields[domain] = {"model": name}
        return "model", fields

    def _lora_fields(self, listed: list) -> dict[str | None, dict]:
        """llama-server's adapters by id, matched to ours by the path's last two parts (`legal/adapter.gguf`:
        the models volume may be mounted elsewhere there), else by file name when ours are uniquely named."""
        entries = [(e.get("id"), Path(str(e.get("path", "")))) for e in listed if isinstance(e, dict)]
        names = [facts.path.name for facts in self.adapters.values()]
        fields: dict[str | None, dict] = {None: {"lora": []}}  # the base model: every adapter at scale 0
        for domain, facts in self.adapters.items():
            match = [i for i, p in entries if p.parts[-2:] == facts.path.parts[-2:]] or (
                [i for i, p in entries if p.name == facts.path.name] if names.count(facts.path.name) == 1 else [])
            if len(match) != 1:
                loaded = ", ".join(str(p) for _, p in entries) or "none"
                raise StageError(f"adapter {domain!r} ({facts.path}) is not loaded on upstream {self.url} (its "
                                 f"/lora-adapters lists: {loaded}); start llama-server with --lora "
                                 f".../{'/'.join(facts.path.parts[-2:])} --lora-init-without-apply")
            fields[domain] = {"lora": [{"id": match[0], "scale": 1.0}]}
        return fields

    def for_adapter(self, name: str | None) -> OpenAIUpstreamEngine:
        """This engine with every request on domain `name`'s adapter as the upstream names it (None: the base)."""
        if name is None:
            return self
        if name not in self.adapters:
            raise StageError(f"adapter {name!r} is not served (served: {', '.join(self.adapters) or 'none'})")
        view = copy.copy(self)  # shares the client (thread-safe) and the mapping
        view._fields = self._adapter_fields[name]
        facts = self.adapters[name]
        view.served = {"domain": facts.domain, "system_prompt": facts.system_prompt}
        return view

    # -- HTTP ---------------------------------------------------------------------------------------------
    def _json(self, method: str, path: str, body: dict | None = None) -> dict:
        try:
            response = self.client.request(method, path, json=body)
        except httpx.HTTPError as e:
            raise UpstreamError(f"{type(e).__name__}: {e}") from None
        if response.status_code >= 400:
            raise UpstreamError(f"upstream answered {response.status_code}: {response.text[:300]}")
        return response.json()

    def _sse(self, path: str, body: dict) -> Iterator[dict]:
        try:
            with self.client.stream("POST", path, json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    raise UpstreamError(f"upstream answered {response.status_code}: {response.text[:300]}")
                for line in response.iter_lines():
                    if not line.startswith("data:"):
                        continue
                    data = line[len("data:"):].strip()
                    if data == "[DONE]":
                        return
                    yield json.loads(data)
        except httpx.HTTPError as e:
            raise UpstreamError(f"{type(e).__name__}: {e}") from None

    def _body(self, params: SamplingParams, **extra) -> dict:
        body = {"model": self.model, "max_tokens": params.max_new_tokens, "temperature": params.temperature,
                "top_p": params.top_p, **self._fields, **extra}
        if params.top_k:
            body["top_k"] = params.top_k  # vLLM and llama.cpp accept it; OpenAI proper does not
        if params.stop:
            body["stop"] = list(params.stop)
        if params.seed is not None:
            body["seed"] = params.seed
        if params.grammar:
            raise NotImplementedError("constrained output (response_format) is not forwarded to an upstream server")
        if params.logprobs is not None:
            raise NotImplementedError("logprobs are not forwarded to an upstream server")
        for key in ("frequency_penalty", "presence_penalty"):
            if getattr(params, key):
                body[key] = getattr(params, key)
        if params.min_p:
            body["min_p"] = params.min_p  # llama.cpp and vLLM extensions, like top_k
        if params.repeat_penalty != 1.0:
            # llama.cpp's name and vLLM's name; each server ignores the other's.
            body["repeat_penalty"] = body["repetition_penalty"] = params.repeat_penalty
        return body

    @staticmethod
    def _generation(out: dict, text: str) -> Generation:
        usage = out.get("usage") or {}
        return Generation(text, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                          out["choices"][0].get("finish_reason") or "length")

    # -- Engine interface ---------------------------------------------------------------------------------
    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        raise NotImplementedError("the upstream server applies its own chat template; use chat()")

    def generate(self, prompts: list[str], params: SamplingParams,
                 should_stop: ShouldStop | None = None) -> list[Generation]:
        results = []
        for prompt in prompts:
            if should_stop is not None and should_stop():
                results.append(Generation("", 0, 0, "stop"))
                continue
            out = self._json("POST", "/v1/completions", self._body(params, prompt=prompt))
            results.append(self._generation(out, out["choices"][0]["text"]))
        return results

    def chat(self, conversations: list[list[dict]], params: SamplingParams,
             should_stop: ShouldStop | None = None) -> list[Generation]:
        results = []
        for messages in conversations:
            if should_stop is not None and should_stop():
                results.append(Generation("", 0, 0, "stop"))
                continue
            out = self._json("POST", "/v1/chat/completions", self._body(params, messages=messages))
            results.append(self._generation(out, out["choices"][0]["message"].get("content") or ""))
        return results

    def stream(self, prompt: str, params: SamplingParams, should_stop: ShouldStop | None = None) -> TextStream:
        body = self._body(params, prompt=prompt, stream=True)
        return TextStream(self._pieces("/v1/completions", body, lambda c: c.get("text")), threading.Event())

    def stream_chat(self, messages: list[dict], params: SamplingParams,
                    should_stop: ShouldStop | None = None) -> TextStream:
        # should_stop is the caller's to check between pieces: closing the stream stops the upstream.
        body = self._body(params, messages=messages, stream=True)
        pieces = self._pieces("/v1/chat/completions", body, lambda c: (c.get("delta") or {}).get("content"))
        return TextStream(pieces, threading.Event())

    def _pieces(self, path: str, body: dict, text_of) -> Generator[str, None, Generation]:
        text, finish_reason, usage, n_chunks = "", "length", {}, 0
        for chunk in self._sse(path, body):  # closing this generator closes the upstream response
            usage = chunk.get("usage") or usage
            for choice in chunk.get("choices") or []:
                piece = text_of(choice)
                if piece:
                    text, n_chunks = text + piece, n_chunks + 1
                    yield piece
                finish_reason = choice.get("finish_reason") or finish_reason
        # Without usage in the stream, each content chunk is one token on the servers we forward to.
        return Generation(text, int(usage.get("prompt_tokens") or 0),
                          int(usage.get("completion_tokens") or n_chunks), finish_reason)

    def score(self, prompt: str, continuation: str, close_turn: bool = False) -> tuple[float, int]:
        raise NotImplementedError("scoring is not part of the OpenAI API; use a local engine")

    def count_tokens(self, text: str) -> int:
        raise NotImplementedError("token counts come from the upstream's usage fields")

    def prompt_ids(self, prompt: str) -> list[int]:
        raise NotImplementedError("the upstream server tokenizes; token counts come from its usage fields")

    def info(self) -> dict:
        meta = next((m for m in self.upstream_models if m.get("id") == self.model), {})
        return {"name": self.model, "type": "openai_upstream", "upstream_url": self.url,
                "quantization": None, "context_length": meta.get("max_model_len"), "parameters": None,
                "owned_by": meta.get("owned_by"), "upstream_adapters": self.adapter_mode,
                **(self.served or {"domain": None, "system_prompt": None})}

    def close(self) -> None:
        self.client.close()
