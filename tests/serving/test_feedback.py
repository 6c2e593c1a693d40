"""POST /api/v1/feedback on real uvicorn servers: the line it appends (KTO's unpaired format, which the align stage
reads), the API key and the UI's session cookie, the bounds, and 50 concurrent posts that all land whole."""

from __future__ import annotations

import hashlib
import json
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from serving.routes_feedback import append_line
from serving.security import UI_COOKIE
from serving.settings import ServeSettings
from stages.config import compose
from tests.serving.conftest import start_thread_server

API_KEY, ADMIN = "feedback-key", "feedback-admin"
AUTH = {"Authorization": f"Bearer {API_KEY}"}
KEYS = ["question", "answer", "label", "domain", "system", "adapter_sha256", "model", "created"]


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def lines_of(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def post(url: str, body: dict, headers: dict | None = AUTH, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/api/v1/feedback", json=body, headers=headers, timeout=30, **kwargs)


@pytest.fixture(scope="module")
def feedback_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("feedback")


@pytest.fixture(scope="module")
def adapters_server(tiny_adapters, feedback_dir):
    """The tiny base with two domain adapters (tests/adapter_models.py), an API key and an admin token."""
    server = start_thread_server(
        f"serve.model={tiny_adapters['base']}", "serve.rerank=false", "serve.n_ctx=256", "serve.parallel=4",
        f"serve.adapters={{legal:'{tiny_adapters['legal']}',healthcare:'{tiny_adapters['healthcare']}'}}",
        f"serve.api_key={API_KEY}", f"serve.admin_token={ADMIN}", f"serve.feedback_dir={feedback_dir}")
    yield server
    server.stop()


@pytest.fixture()
def one_model_server(gguf_engine_shared, tmp_path, request):
    """The SmolLM2 GGUF published for healthcare (no adapters: healthcare is the one domain it serves), with the
    test's own settings (`request.param`) and its own feedback folder."""
    overrides = getattr(request, "param", ())
    server = start_thread_server(f"serve.model={gguf_engine_shared.path}", "serve.rerank=false",
                                 f"serve.feedback_dir={tmp_path / 'feedback'}", *overrides, engine=gguf_engine_shared)
    yield server
    server.stop()


def test_the_line_written_is_ktos_unpaired_format(adapters_server, feedback_dir, tiny_adapters):
    body = {"domain": "legal", "question": "Is a verbal agreement binding?", "answer": "Often, yes — «oral» 👍",
            "label": True, "system": "You answer legal questions."}
    before = datetime.now(UTC)
    response = post(adapters_server.url, body)
    assert response.status_code == 201, response.text
    assert response.json() == {"ok": True, "file": "legal.jsonl", "lines": 1}
    [line] = (feedback_dir / "legal.jsonl").read_text(encoding="utf-8").splitlines()
    record = json.loads(line)
    assert list(record) == KEYS
    assert {k: record[k] for k in KEYS[:5]} == {**body, "system": "You answer legal questions."}
    assert record["adapter_sha256"] == sha256(tiny_adapters["legal"])
    assert record["model"] == adapters_server.app.state.ctx.model_id == "base"
    created = datetime.fromisoformat(record["created"])
    assert created.utcoffset() == timedelta(0) and before - timedelta(seconds=1) <= created <= datetime.now(UTC)

    # The base model under the adapters: no adapter, so no hash; no system prompt sent -> null.
    base = post(adapters_server.url, {"domain": "base", "question": "Hi?", "answer": "Hello.", "label": False})
    assert base.status_code == 201 and base.json()["file"] == "base.jsonl"
    [record] = lines_of(feedback_dir / "base.jsonl")
    assert (record["label"], record["system"], record["adapter_sha256"], record["domain"]) == (False, None, None,
                                                                                               "base")


def test_the_api_key_or_the_ui_session_is_needed(adapters_server, feedback_dir):
    body = {"domain": "healthcare", "question": "q", "answer": "a", "label": True}
    for headers in (None, {"Authorization": "Bearer wrong"}):
        response = post(adapters_server.url, body, headers=headers)
        assert response.status_code == 401 and "API key" in response.json()["error"]["message"]
    assert not (feedback_dir / "healthcare.jsonl").exists()
    session = httpx.post(f"{adapters_server.url}/ui/login", json={"api_key": API_KEY}).cookies[UI_COOKIE]
    assert post(adapters_server.url, body, headers=None, cookies={UI_COOKIE: session}).status_code == 201
    assert len(lines_of(feedback_dir / "healthcare.jsonl")) == 1


@pytest.mark.parametrize(("body", "field"), [
    ({"domain": "tax"}, "domain"), ({"domain": "auto"}, "domain"), ({"domain": "domain-llm-legal"}, "domain"),
    ({"question": "x" * 8001}, "question"), ({"answer": "x" * 8001}, "answer"), ({"system": "x" * 8001}, "system"),
    ({"answer": ""}, "answer"), ({"label": "yes"}, "label"), ({"label": 1}, "label"), ({"rating": 5}, "rating")])
def test_bad_bodies_are_refused_by_field_and_nothing_is_written(adapters_server, feedback_dir, body, field):
    before = sorted(p.name for p in feedback_dir.iterdir())
    response = post(adapters_server.url, {"domain": "legal", "question": "q", "answer": "a", "label": True, **body})
    message = response.json()["error"]["message"]
    assert response.status_code == 422 and message.startswith(f"{field}:") and "\n" not in message, message
    assert sorted(p.name for p in feedback_dir.iterdir()) == before
    if field == "domain":
        assert message.endswith("use one of legal, healthcare, base")


def test_a_reloaded_adapter_is_hashed_again(adapters_server, feedback_dir, tiny_adapters):
    """The hash is kept per adapter load: `legal` unloaded and loaded from another file gets that file's."""
    admin = {"Authorization": f"Bearer {ADMIN}"}
    url = adapters_server.url
    assert post(url, {"domain": "legal", "question": "q", "answer": "a", "label": True}).status_code == 201
    assert httpx.delete(f"{url}/api/v1/adapters/legal", headers=admin, timeout=60).status_code == 200
    gone = post(url, {"domain": "legal", "question": "q", "answer": "a", "label": True})
    assert gone.status_code == 422 and gone.json()["error"]["message"].endswith("use one of healthcare, base")
    loaded = httpx.post(f"{url}/api/v1/adapters", headers=admin, timeout=60,
                        json={"domain": "legal", "path": str(tiny_adapters["healthcare"])})
    assert loaded.status_code == 201, loaded.text
    assert post(url, {"domain": "legal", "question": "q2", "answer": "a", "label": True}).status_code == 201
    hashes = [r["adapter_sha256"] for r in lines_of(feedback_dir / "legal.jsonl")]
    assert hashes[-2:] == [sha256(tiny_adapters["legal"]), sha256(tiny_adapters["healthcare"])]


def test_fifty_concurrent_posts_land_as_fifty_whole_lines(one_model_server, tmp_path):
    """Threads post at once, each a long answer (so interleaved writes would show): every line is whole JSON, none
    is lost, and the line counts answered are 1..50, each once."""
    url, start = one_model_server.url, threading.Barrier(50)
    answered: list[httpx.Response] = []

    def send(i: int) -> None:
        start.wait()
        answered.append(post(url, {"domain": "healthcare", "question": f"question {i}",
                                   "answer": f"{i}:" + "answer text " * 600, "label": i % 2 == 0}, headers=None))

    threads = [threading.Thread(target=send, args=(i,)) for i in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert [r.status_code for r in answered] == [201] * 50
    assert sorted(r.json()["lines"] for r in answered) == list(range(1, 51))
    records = lines_of(tmp_path / "feedback" / "healthcare.jsonl")
    assert sorted(r["question"] for r in records) == sorted(f"question {i}" for i in range(50))
    assert all(r["answer"] == r["question"].split()[1] + ":" + "answer text " * 600 for r in records)
    assert {r["adapter_sha256"] for r in records} == {None}  # the one model: no adapter
    # the manifest's domain is the one served: `base` is not
    wrong = post(url, {"domain": "base", "question": "q", "answer": "a", "label": True}, headers=None)
    assert wrong.status_code == 422 and wrong.json()["error"]["message"].endswith("use one of healthcare")


@pytest.mark.parametrize("one_model_server", [("serve.feedback_max_file_mb=0.001",)], indirect=True)
def test_a_full_file_answers_507_and_writes_nothing(one_model_server, tmp_path):
    path = tmp_path / "feedback" / "healthcare.jsonl"
    body = {"domain": "healthcare", "question": "q", "answer": "x" * 200, "label": True}
    assert post(one_model_server.url, body, headers=None).status_code == 201
    fitting = 1048 // path.stat().st_size  # 0.001 MB = 1048 bytes; every line here has the same length
    assert fitting >= 2
    statuses = [post(one_model_server.url, body, headers=None).status_code for _ in range(fitting)]
    assert statuses == [201] * (fitting - 1) + [507]
    size = path.stat().st_size
    refused = post(one_model_server.url, body, headers=None)
    message = refused.json()["error"]["message"]
    assert refused.status_code == 507 and message == ("healthcare.jsonl reached serve.feedback_max_file_mb "
                                                      "(0.001 MB); nothing written")
    assert path.stat().st_size == size and len(lines_of(path)) == fitting


@pytest.mark.parametrize("one_model_server", [("serve.feedback_dir=null",)], indirect=True)
def test_no_feedback_dir_answers_404(one_model_server, tmp_path):
    response = post(one_model_server.url, {"domain": "healthcare", "question": "q", "answer": "a", "label": True},
                    headers=None)
    assert response.status_code == 404 and response.json()["error"]["message"] == (
        "feedback is off on this server (serve.feedback_dir is null)")
    assert not (tmp_path / "feedback").exists()


@pytest.mark.parametrize("one_model_server", [("serve.feedback_dir=/dev/null/feedback",)], indirect=True)
def test_a_folder_that_cannot_be_written_answers_503_in_one_line(one_model_server):
    response = post(one_model_server.url, {"domain": "healthcare", "question": "q", "answer": "a", "label": True},
                    headers=None)
    assert response.status_code == 503 and response.json()["error"]["message"] == (
        "feedback not saved: healthcare.jsonl cannot be written in serve.feedback_dir (Not a directory)")


def test_a_relative_feedback_dir_means_the_project_root(tmp_path):
    """A server started from another directory writes where its project keeps feedback, never into its cwd."""
    settings = ServeSettings.from_config(compose(["serve.feedback_dir=data/feedback"]), root=tmp_path)
    assert settings.feedback_dir == str(tmp_path / "data" / "feedback")
    assert ServeSettings.from_config(compose(["serve.feedback_dir=null"]), root=tmp_path).feedback_dir is None


def test_a_line_cut_short_by_another_writer_is_ended_before_ours(tmp_path):
    path = tmp_path / "healthcare.jsonl"
    path.write_text('{"question": "whole"}\n{"question": "cut sh')
    assert append_line(path, {"question": "ours"}, max_bytes=1 << 20) == 3
    assert path.read_text().splitlines()[1:] == ['{"question": "cut sh', '{"question": "ours"}']
    assert append_line(path, {"question": "next"}, max_bytes=1 << 20) == 4  # counted from the cache this time
