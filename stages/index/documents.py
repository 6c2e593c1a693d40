"""Documents to index: the files under `index.docs_dir` (markdown, text, JSONL), or, when it holds none, the
synthetic domain's fact sheets (one document per condition / legal concept / finance term).

    docs = load_documents(Path("data/docs"), domain="healthcare")   # [Document(doc_id, title, text, source)]
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from stages.errors import StageError

TEXT_SUFFIXES = (".md", ".markdown", ".txt")
# A docs folder's own README says how to use the folder; it is not a document to answer from.
SKIPPED_NAMES = ("README.md",)


@dataclass(frozen=True)
class Document:
    doc_id: str
    title: str
    text: str
    source: str  # file path (with line for JSONL) or "synthetic:<domain>"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise StageError(f"{path}: not UTF-8 text (byte {e.start}); convert it or remove it from the docs "
                         "folder") from None
    except OSError as e:
        raise StageError(f"{path}: cannot read ({e.strerror}); fix its permissions or remove it") from None


def _title(text: str, fallback: str) -> str:
    for line in text.splitlines():
        if line.strip():
            return line.strip().lstrip("#").strip()[:200] or fallback
    return fallback


def documents_from_folder(folder: Path) -> list[Document]:
    docs: list[Document] = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in SKIPPED_NAMES):
        rel = path.relative_to(folder).as_posix()
        if path.suffix.lower() in TEXT_SUFFIXES:
            text = _read_text(path).strip()
            if text:
                docs.append(Document(rel, _title(text, path.stem), text, str(path)))
        elif path.suffix.lower() == ".jsonl":
            for number, line in enumerate(_read_text(path).splitlines(), start=1):
                if not line.strip():
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError as e:
                    raise StageError(f"{path}:{number}: not valid JSON ({e.msg}); one object per line with a "
                                     "`text` field") from None
                text = row.get("text") if isinstance(row, dict) else None
                if not isinstance(text, str) or not text.strip():
                    raise StageError(f"{path}:{number}: field `text` missing or empty; each line needs "
                                     "{\"text\": ..., optional \"id\", \"title\"}")
                doc_id = str(row.get("id") or f"{rel}#{number}")
                docs.append(Document(doc_id, str(row.get("title") or _title(text, doc_id)), text.strip(),
                                     f"{path}:{number}"))
        elif path.suffix.lower() == ".pdf":
            raise StageError(f"{path}: PDF is not read; convert it to text or markdown first (e.g. pdftotext)")
    ids = [d.doc_id for d in docs]
    duplicate = next((i for i in ids if ids.count(i) > 1), None)
    if duplicate:
        raise StageError(f"{folder}: document id {duplicate!r} appears twice; give each JSONL line its own `id`")
    return docs


def fact_sheets(domain: str) -> list[Document]:
    """The synthetic domain's facts as documents: one per subject, one paragraph per fact."""
    from stages.prepare.synthetic.generator import FACTS

    if domain not in FACTS:
        raise StageError(f"domain.name={domain!r}: no synthetic fact sheets for it; put documents in "
                         f"index.docs_dir (known domains: {', '.join(FACTS)})")
    sheets: dict[str, list] = {}
    for fact in FACTS[domain]:
        sheets.setdefault(fact.fact_id.rsplit(".", 1)[0], []).append(fact)
    docs = []
    for entity, facts in sheets.items():
        title = facts[0].subject[0].upper() + facts[0].subject[1:]
        docs.append(Document(entity, title, "\n\n".join(f.answer for f in facts), f"synthetic:{domain}"))
    return docs


def load_documents(docs_dir: Path, topics: str | list[str]) -> list[Document]:
    """The documents in `docs_dir`, else the synthetic fact sheets of every topic (the synthetic domains)."""
    if docs_dir.is_dir():
        found = documents_from_folder(docs_dir)
        if found:
            return found
    elif docs_dir.exists():
        raise StageError(f"index.docs_dir={docs_dir}: not a folder; point it at a folder of .md/.txt/.jsonl files")
    return [doc for topic in ([topics] if isinstance(topics, str) else topics) for doc in fact_sheets(topic)]
