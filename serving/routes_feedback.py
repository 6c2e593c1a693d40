"""POST /api/v1/feedback: a user's verdict on one answer (the playground's 👍/👎), kept for preference tuning.

    curl localhost:8000/api/v1/feedback -H 'Content-Type: application/json' \
         -d '{"domain": "healthcare", "question": "What is asthma?", "answer": "A lung disease.", "label": true}'
    -> 201 {"ok": true, "file": "healthcare.jsonl", "lines": 12}

Each post appends one JSON line to <serve.feedback_dir>/<domain>.jsonl in KTO's unpaired shape, which the align
stage reads:

    {"question": str, "answer": str, "label": bool, "domain": str, "system": str | null,
     "adapter_sha256": str | null, "model": str, "created": "2026-12-05T10:11:12.345+00:00"}

`domain` is one the server answers with (`base` for the base model); `adapter_sha256` the sha256 of that domain's
adapter GGUF (null for the base model, or a server whose one model is the domain's merged model), hashed on the
first feedback after the adapter was loaded; `model` the served model's public id (the base under the adapters).
Appends from every request of this process go through one lock, and each is one write of the whole line, flushed
and fsynced before the 201: lines never interleave, and a line answered 201 survives a crash. A domain's file
stops growing at serve.feedback_max_file_mb (507, nothing written); serve.feedback_dir=null turns this off (404).
"""

# No `from __future__ import annotations` here: FastAPI must see the per-app request class as an object.
import asyncio
import json
import logging
import os
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException
from pydantic import BaseModel, ConfigDict, Field, StrictBool

from serving.domains import BASE
from serving.security import api_key_check
from serving.service import ServingContext, error_responses, http_error
from serving.worker import NotReady
from stages.inference.adapters import DOMAIN_NAME, AdapterFacts
from stages.manifest import sha256_file

log = logging.getLogger(__name__)

# Process-wide: every app of this process appends through it (two servers in one test process, say), and the line
# counts below are read and updated under it.
WRITE_LOCK = threading.Lock()
# path -> (device, inode, size, lines) after this process's last append: the next post's line count without
# reading the file again. A file changed by anyone else (another size or inode) is counted afresh.
_counted: dict[Path, tuple[int, int, int, int]] = {}


class FeedbackFull(Exception):
    """The domain's file reached serve.feedback_max_file_mb."""


class FeedbackResponse(BaseModel):
    ok: bool = True
    file: str = Field(description="the file the line went to, in serve.feedback_dir: <domain>.jsonl")
    lines: int = Field(description="lines in that file now, this one included")


def feedback_record(domain: str, question: str, answer: str, label: bool, system: str | None,
                    adapter_sha256: str | None, model: str) -> dict:
    """One line of KTO's unpaired format; the keys are what the align stage reads."""
    return {"question": question, "answer": answer, "label": label, "domain": domain, "system": system,
            "adapter_sha256": adapter_sha256, "model": model,
            "created": datetime.now(UTC).isoformat(timespec="milliseconds")}


def _count_lines(path: Path) -> tuple[int, bool]:
    """(newlines in the file, whether it ends with one or is empty)."""
    lines, last = 0, b"\n"
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            lines += block.count(b"\n")
            last = block[-1:]
    return lines, last == b"\n"


def append_line(path: Path, record: dict, max_bytes: int) -> int:
    """Append the record as one JSON line (one write, flushed and fsynced); returns the file's line count.
    FeedbackFull, with nothing written, when the line would take the file past max_bytes."""
    line = (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    with WRITE_LOCK:
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            st = os.stat(path)
            size, where = st.st_size, (st.st_dev, st.st_ino)
        except FileNotFoundError:
            size, where = 0, None
        known = _counted.get(path)
        if size == 0:
            lines, clean = 0, True
        elif known is not None and (known[0], known[1], known[2]) == (*where, size):
            lines, clean = known[3], True
        else:
            lines, clean = _count_lines(path)
        # A last line cut short (a crash of another writer, a hand edit) is ended first, so ours stays valid JSON.
        data = line if clean else b"\n" + line
        if size + len(data) > max_bytes:
            raise FeedbackFull()
        created = where is None
        with open(path, "ab") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            st = os.fstat(f.fileno())
        if created:  # the new file's directory entry must survive a crash too
            folder = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(folder)
            finally:
                os.close(folder)
        lines += data.count(b"\n")
        _counted[path] = (st.st_dev, st.st_ino, st.st_size, lines)
        return lines


def build_feedback_router(ctx: ServingContext) -> APIRouter:
    settings, limits = ctx.settings, ctx.settings.limits
    folder = Path(settings.feedback_dir) if settings.feedback_dir else None
    max_bytes = int(settings.feedback_max_file_mb * 1024 * 1024)
    log.info("feedback %s", f"-> {folder}/<domain>.jsonl" if folder else "off (serve.feedback_dir is null)")
    router = APIRouter(prefix="/api/v1", tags=["seed API"],
                       dependencies=[Depends(api_key_check(settings.api_key, ctx.sessions))],
                       responses=error_responses(settings))
    text = Annotated[str, Field(min_length=1, max_length=limits.feedback_max_chars)]

    class FeedbackRequest(BaseModel):
        model_config = ConfigDict(extra="forbid")
        domain: str = Field(min_length=1, max_length=64, examples=["base"],
                            description="the domain whose model answered, as answers name it (`domain` field, "
                                        "X-Domain-LLM-Domain header): a served domain, or `base`")
        question: text = Field(description="the user's message the answer replied to",
                               examples=["What are the symptoms of asthma?"])
        answer: text = Field(description="the model's answer, as shown",
                             examples=["Wheezing, shortness of breath, chest tightness and coughing."])
        label: StrictBool = Field(description="true: a good answer (👍); false: a bad one (👎)")
        system: Annotated[str, Field(max_length=limits.feedback_max_chars)] | None = Field(
            None, description="the system prompt the request sent (null: the server's default)")

    hashes: dict[str, tuple[AdapterFacts, str]] = {}  # domain -> (the adapter as loaded, its file's sha256)

    def served_domains() -> list[str]:
        if ctx.domains:
            return [*ctx.domains, BASE]
        # One model answers everything: the domain its manifest names (a merged model), else `base`.
        worker = ctx.generation.worker
        if worker.state != "ready":
            raise http_error(NotReady(worker.describe_not_ready()), settings.request_timeout_s)
        served = (getattr(worker.engine, "served", None) or {}).get("domain")
        return [served] if served else [BASE]

    async def adapter_sha256(domain: str) -> str | None:
        facts = ctx.domains.get(domain)
        if facts is None:
            return None
        known = hashes.get(domain)
        if known is None or known[0] is not facts:  # hashed once per load (a reloaded domain has new facts)
            try:
                known = facts, await asyncio.to_thread(sha256_file, facts.path)
            except OSError as e:
                raise HTTPException(503, f"domain {domain!r}: its adapter file cannot be read ({e.strerror}); "
                                         "feedback not saved") from None
            hashes[domain] = known
        return known[1]

    @router.post("/feedback", status_code=201, response_model=FeedbackResponse,
                 summary="Keep a user's verdict (good/bad) on one answer, for preference tuning",
                 responses={404: {"description": "feedback is off (serve.feedback_dir is null)"},
                            422: {"description": "a field over serve.feedback_max_chars, or a domain not served"},
                            503: {"description": "the feedback file cannot be written (read-only or full disk)"},
                            507: {"description": "the domain's file reached serve.feedback_max_file_mb"}})
    async def feedback(body: FeedbackRequest) -> FeedbackResponse:
        if folder is None:
            raise HTTPException(404, "feedback is off on this server (serve.feedback_dir is null)")
        domains = served_domains()
        # a served name is a file name too: domain names are [a-z0-9_-] (check_domain_name), `base` among them
        if body.domain not in domains or not DOMAIN_NAME.match(body.domain):
            raise HTTPException(422, f"domain: {body.domain!r} is not served here; use one of {', '.join(domains)}")
        record = feedback_record(body.domain, body.question, body.answer, body.label, body.system,
                                 await adapter_sha256(body.domain), ctx.model_id)
        path = folder / f"{body.domain}.jsonl"
        try:
            lines = await asyncio.to_thread(append_line, path, record, max_bytes)
        except FeedbackFull:
            raise HTTPException(507, f"{path.name} reached serve.feedback_max_file_mb "
                                     f"({settings.feedback_max_file_mb:g} MB); nothing written") from None
        except OSError as e:  # a read-only or full disk: the operator's log names the path, the client the cause
            log.error("feedback not saved to %s: %s", path, e)
            raise HTTPException(503, f"feedback not saved: {path.name} cannot be written in serve.feedback_dir "
                                     f"({e.strerror or e})") from None
        return FeedbackResponse(file=path.name, lines=lines)

    return router
