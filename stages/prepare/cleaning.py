"""Cleaning steps of the prepare stage, each switchable in conf/prepare/default.yaml (`prepare.cleaning`).

    domain-llm prepare prepare.cleaning.dedup_near=false prepare.cleaning.max_length=512

Order: text fixes (HTML entities, URLs, e-mails, special characters, whitespace) -> empty rows -> length
-> exact duplicates -> near-duplicates -> domain balancing. Every dropped row is counted by reason.
Duplicates are judged on the prompt (instruction + input): one prompt with two answers is noise either way.
"""

from __future__ import annotations

import html
import logging
import random
import re
import unicodedata
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, fields
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from stages.errors import StageError
from stages.prepare.dedup import NearDuplicateIndex
from stages.prepare.records import refresh_messages, user_content

log = logging.getLogger(__name__)

TEXT_FIELDS = ("instruction", "input", "output")
URL_RE = re.compile(r"(?:https?://|ftp://|www\.)[^\s<>\"')\]]+", re.IGNORECASE)
EMAIL_RE = re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)*\.[a-z]{2,}\b", re.IGNORECASE)
_SPACES_RE = re.compile(r"[^\S\n]+")  # whitespace other than newlines
_BLANK_LINES_RE = re.compile(r"\n{3,}")
_KEEP_CONTROL = {"\n", "\t"}
# Unicode categories removed as special characters: control, format (zero-width etc.), private use,
# surrogates, unassigned; plus the replacement character left behind by bad decoding.
_DROP_CATEGORIES = {"Cc", "Cf", "Co", "Cs", "Cn"}


@dataclass
class CleaningConfig:
    decode_html: bool = True
    remove_urls: bool = True
    remove_emails: bool = True
    normalize_whitespace: bool = True
    strip_special_chars: bool = True
    drop_empty: bool = True
    dedup_exact: bool = True
    dedup_near: bool = True
    near_dup_threshold: float = 0.9
    length_unit: str = "auto"  # auto | tokens | chars
    min_instruction_length: int = 2
    min_output_length: int = 1
    max_length: int = 1024
    balance_domains: bool = False

    @classmethod
    def from_cfg(cls, section: DictConfig | dict) -> CleaningConfig:
        values = OmegaConf.to_container(section) if isinstance(section, DictConfig) else dict(section)
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise StageError(f"prepare.cleaning: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
        config = cls(**values)
        if config.length_unit not in ("auto", "tokens", "chars"):
            raise StageError(f"prepare.cleaning.length_unit={config.length_unit!r}: use auto, tokens or chars")
        return config


def clean_text(text: str, config: CleaningConfig) -> str:
    """Apply the enabled text fixes to one field."""
    if config.decode_html:
        text = html.unescape(text)
    if config.remove_urls:
        text = URL_RE.sub("", text)
    if config.remove_emails:
        text = EMAIL_RE.sub("", text)
    if config.strip_special_chars:
        text = "".join(ch for ch in text if ch in _KEEP_CONTROL or (
            ch != "\ufffd" and unicodedata.category(ch) not in _DROP_CATEGORIES))
    if config.normalize_whitespace:
        text = _SPACES_RE.sub(" ", text)
        text = "\n".join(line.strip() for line in text.split("\n"))
        text = _BLANK_LINES_RE.sub("\n\n", text).strip()
    return text


def length_function(config: CleaningConfig, tokenizer_path: str | Path | None) -> tuple[Callable[[str], int], str]:
    """(length of a text, unit name): tokens of the model's tokenizer when wanted and present, else chars."""
    path = Path(tokenizer_path) if tokenizer_path else None
    if config.length_unit in ("auto", "tokens") and path is not None and path.is_file():
        from tokenizers import Tokenizer

        tokenizer = Tokenizer.from_file(str(path))
        return (lambda text: len(tokenizer.encode(text, add_special_tokens=False).ids)), "tokens"
    if config.length_unit == "tokens":
        log.warning("length_unit=tokens but %s does not exist (run the base stage first); using characters",
                    path)
    return len, "chars"


def example_text(record: dict) -> str:
    return user_content(record["instruction"], record["input"]) + "\n" + record["output"]


def prompt_text(record: dict) -> str:
    return user_content(record["instruction"], record["input"])


def _length_reason(record: dict, config: CleaningConfig, length: Callable[[str], int]) -> str | None:
    if length(record["instruction"]) < config.min_instruction_length:
        return "too_short_instruction"
    if length(record["output"]) < config.min_output_length:
        return "too_short_output"
    if config.max_length and length(example_text(record)) > config.max_length:
        return "too_long"
    return None


def balance_domains(records: list[dict], seed: int) -> tuple[list[dict], int]:
    """Keep a seeded random sample of each domain's rows, as many as the smallest domain has."""
    by_domain: dict[str, list[int]] = {}
    for i, record in enumerate(records):
        by_domain.setdefault(record["domain"], []).append(i)
    if len(by_domain) < 2:
        return records, 0
    cap = min(len(idx) for idx in by_domain.values())
    rng = random.Random(seed)
    keep = {i for idx in by_domain.values() for i in (rng.sample(idx, cap) if len(idx) > cap else idx)}
    return [r for i, r in enumerate(records) if i in keep], len(records) - len(keep)


def clean_records(records: list[dict], config: CleaningConfig, system_prompt: str | None, seed: int,
                  tokenizer_path: str | Path | None = None) -> tuple[list[dict], Counter, str]:
    """Clean and filter records; returns (kept records, dropped count by reason, length unit used)."""
    dropped: Counter = Counter()
    length, unit = length_function(config, tokenizer_path)
    near_index = NearDuplicateIndex(config.near_dup_threshold)
    show = len(records) > 5000
    kept: list[dict] = []
    for record in tqdm(records, desc="clean", unit="row", disable=not show):
        original = tuple(record[f] for f in TEXT_FIELDS)
        for f in TEXT_FIELDS:
            record[f] = clean_text(record[f], config)
        if tuple(record[f] for f in TEXT_FIELDS) != original:
            refresh_messages(record, system_prompt)
        if config.drop_empty and (not record["instruction"].strip() or not record["output"].strip()):
            dropped["empty"] += 1
            continue
        reason = _length_reason(record, config, length)
        if reason:
            dropped[reason] += 1
            continue
        prompt = prompt_text(record)
        if config.dedup_exact and near_index.find_exact(prompt) is not None:
            dropped["duplicate_exact"] += 1
            continue
        if config.dedup_near and near_index.find(prompt) is not None:
            dropped["duplicate_near"] += 1
            continue
        near_index.add(prompt, record["id"])
        kept.append(record)
    if config.balance_domains:
        kept, n_balanced = balance_domains(kept, seed)
        if n_balanced:
            dropped["domain_balancing"] += n_balanced
    for reason, n in sorted(dropped.items()):
        log.info("cleaning dropped %d rows: %s", n, reason)
    return kept, dropped, unit
