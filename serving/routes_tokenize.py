"""The served model's tokenizer over HTTP, in vLLM's shape: `GET /tokenizer_info`, `POST /tokenize`,
`POST /detokenize`. lm-evaluation-harness finds them (its `remote` tokenizer backend) and then sends token-id
prompts to /v1/completions, so what it scores is tokenized by the very GGUF that is served.

    POST /tokenize   {"prompt": "Asthma is", "add_special_tokens": false}  -> {"tokens": [...], "count": 3, ...}
    POST /detokenize {"tokens": [57, 1030]}                                 -> {"prompt": "..."}

Every adapter shares the base model's vocabulary, so `model` picks nothing here. GGUF engine only (501 otherwise).
"""

# No `from __future__ import annotations` here: FastAPI must see the request classes as objects.
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt

from serving.security import api_key_check
from serving.service import ServingContext, error_responses
from stages.errors import StageError


def build_tokenize_router(ctx: ServingContext) -> APIRouter:
    settings, limits = ctx.settings, ctx.settings.limits
    router = APIRouter(tags=["Tokenizer"], dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))],
                       responses=error_responses(settings))

    class TokenizeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        prompt: Annotated[str, Field(max_length=limits.max_prompt_chars)]
        add_special_tokens: StrictBool = Field(True, description="add BOS where the model adds one to raw text")
        model: str | None = Field(None, max_length=256, description="ignored: every adapter shares the vocabulary")

    class DetokenizeRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        tokens: Annotated[list[Annotated[StrictInt, Field(ge=0)]], Field(max_length=limits.max_prompt_chars)]
        model: str | None = Field(None, max_length=256)

    def engine():
        engine = ctx.generation.worker.engine
        if not hasattr(engine, "checked_ids"):
            raise HTTPException(501, "the tokenizer endpoints need serve.engine=gguf")
        return engine

    @router.get("/tokenizer_info", summary="The served model's special tokens, chat template and context")
    async def tokenizer_info() -> dict:
        e = engine()
        contract = e.contract
        return {"tokenizer_class": "llama.cpp", "bos_token": contract.bos_token or None,
                "eos_token": contract.eos_token or None, "pad_token": None, "chat_template": contract.template,
                "model_max_length": e.n_ctx, "add_bos_token": contract.add_bos}

    @router.post("/tokenize", summary="Token ids of a text, as the served model reads it")
    async def tokenize(body: TokenizeRequest, request: Request) -> dict:
        e = engine()
        tokens = e.prompt_ids(body.prompt) if body.add_special_tokens else e.tokenize(body.prompt)
        return {"tokens": tokens, "count": len(tokens), "max_model_len": e.n_ctx}

    @router.post("/detokenize", summary="The text of token ids")
    async def detokenize(body: DetokenizeRequest) -> dict:
        e = engine()
        try:
            ids = e.checked_ids(body.tokens)
        except StageError as err:
            raise HTTPException(422, str(err).replace("prompt[", "tokens[")) from None
        return {"prompt": b"".join(e.detokenize(i) for i in ids).decode("utf-8", errors="replace")}

    return router
