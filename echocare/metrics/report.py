"""Report-generation metrics (seed 003 §4.3, "Report"): BLEU-1..4, METEOR, ROUGE-L, CIDEr-D, findings ACC/P/R/F1.

* Text is compared on :func:`tokenize_report` tokens: NFKC + lowercase, words of letters/digits
  (decimals kept, punctuation dropped), and every CJK character as its own token (the usual
  practice for Chinese reports such as USData's).
* **BLEU-n** is corpus-level (nltk ``corpus_bleu``, uniform weights over 1..n grams, no smoothing).
* **METEOR** is the mean sentence METEOR of nltk (exact, Porter-stem and WordNet-synonym matching).
  WordNet is data nltk downloads on demand, which is impossible here: pass ``wordnet_dir`` (an
  ``nltk_data/corpora/wordnet`` folder) or have it in an nltk data path, else ``meteor`` is ``None``
  with the reason. ``meteor_exact_stem`` (the same formula with the exact and stem stages only) is
  always reported and says what it is.
* **ROUGE-L** is the mean LCS F1 of Google's ``rouge-score`` (with the tokenizer above).
* **Findings** (the report's clinical-efficacy metrics): a finding is a *term* (one or more tokens)
  that is present in a report when its token sequence occurs contiguously in it; each report × term
  pair is a binary label, and accuracy, precision, recall and F1 are micro-averaged over all
  report × term pairs (generated vs reference). Users pass the term list (e.g. the report's
  sonographer entities: liver, capsule, echogenicity, ...); the default is
  :func:`default_findings_terms`: the ``k`` content unigrams and bigrams found in the most training
  reports (ties alphabetical), leaving out stop-words, numbers and terms present in *every* report.
* **CIDEr-D** is pycocoevalcap's (pure Python; its Java parts — PTB tokenizer, METEOR, SPICE — are not
  used), on the same tokens; document frequencies come from the evaluated references, as in COCO.
"""

from __future__ import annotations

import logging
import re
import unicodedata
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

__all__ = [
    "bleu", "cider", "default_findings_terms", "findings_labels", "findings_scores", "meteor", "report_generation_report",
    "rouge_l", "tokenize_report",
]

_CJK = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:\.\d+)?")
STOPWORDS = frozenset(
    "a an and are as at be been but by for from has have in is it its of on or the this that to was were "
    "with within without no not there these those which who whom also than then into onto over under seen "
    "show shows showed noted appears appear measuring measures measured size mm cm".split()
)


def tokenize_report(text: str) -> list[str]:
    """Metric tokens of ``text``: lowercase words/numbers and single CJK characters."""
    return _TOKEN.findall(unicodedata.normalize("NFKC", text).lower())


def _check(hyps: Sequence[str], refs: Sequence[str]) -> None:
    if len(hyps) != len(refs):
        raise ValueError(f"{len(hyps)} generated reports but {len(refs)} references")
    if not hyps:
        raise ValueError("no reports to score")


def bleu(hyps: Sequence[str], refs: Sequence[str], max_n: int = 4) -> dict[str, float]:
    """Corpus BLEU-1..``max_n`` (nltk), one reference per report: ``{"bleu_1": ..., ...}``."""
    from nltk.translate.bleu_score import corpus_bleu

    _check(hyps, refs)
    h = [tokenize_report(t) for t in hyps]
    r = [[tokenize_report(t)] for t in refs]
    return {f"bleu_{n}": float(corpus_bleu(r, h, weights=tuple([1.0 / n] * n))) for n in range(1, max_n + 1)}


class _ExactStemOnly:
    """A WordNet stand-in with no synsets: METEOR's synonym stage then matches nothing."""

    @staticmethod
    def synsets(*_args: Any, **_kwargs: Any) -> list:
        return []


def _wordnet(wordnet_dir: str | Path | None) -> tuple[Any | None, str | None]:
    """(WordNet reader, None) or (None, reason)."""
    try:
        if wordnet_dir is not None:
            from nltk.corpus.reader.wordnet import WordNetCorpusReader

            reader = WordNetCorpusReader(str(wordnet_dir), None)
        else:
            from nltk.corpus import wordnet as reader

        reader.synsets("liver")
        return reader, None
    except (LookupError, OSError) as err:
        where = f"in {wordnet_dir}" if wordnet_dir is not None else "in any nltk data path"
        lines = [ln.strip() for ln in str(err).splitlines() if any(c.isalpha() for c in ln)]
        detail = lines[0] if lines else type(err).__name__
        return None, f"WordNet not found {where} (nltk downloads it on demand; pass wordnet_dir): {detail}"


def meteor(hyps: Sequence[str], refs: Sequence[str], wordnet: Any | None = None) -> float:
    """Mean sentence METEOR (nltk); ``wordnet`` = a WordNet reader, or None for exact + stem matching only."""
    from nltk.translate.meteor_score import meteor_score

    _check(hyps, refs)
    wn = wordnet if wordnet is not None else _ExactStemOnly()
    scores = [meteor_score([tokenize_report(r)], tokenize_report(h), wordnet=wn) for h, r in zip(hyps, refs)]
    return float(sum(scores) / len(scores))


def cider(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Corpus CIDEr-D (pycocoevalcap ``Cider``), one reference per report."""
    from pycocoevalcap.cider.cider import Cider

    _check(hyps, refs)
    gts = {i: [" ".join(tokenize_report(r))] for i, r in enumerate(refs)}
    res = {i: [" ".join(tokenize_report(h))] for i, h in enumerate(hyps)}
    score, _ = Cider().compute_score(gts, res)
    return float(score)


class _RougeTokenizer:
    @staticmethod
    def tokenize(text: str) -> list[str]:
        return tokenize_report(text)


def rouge_l(hyps: Sequence[str], refs: Sequence[str]) -> float:
    """Mean ROUGE-L F1 (Google ``rouge-score``, LCS) over reports."""
    from rouge_score import rouge_scorer

    _check(hyps, refs)
    scorer = rouge_scorer.RougeScorer(["rougeL"], tokenizer=_RougeTokenizer())
    return float(sum(scorer.score(r, h)["rougeL"].fmeasure for h, r in zip(hyps, refs)) / len(hyps))


def _contains(tokens: list[str], term: list[str]) -> bool:
    n = len(term)
    return any(tokens[i : i + n] == term for i in range(len(tokens) - n + 1)) if n else False


def findings_labels(texts: Sequence[str], terms: Sequence[str]) -> list[list[bool]]:
    """(reports × terms) presence: term tokens occur contiguously in the report's tokens."""
    term_tokens = [tokenize_report(t) for t in terms]
    empty = [t for t, tt in zip(terms, term_tokens) if not tt]
    if empty:
        raise ValueError(f"findings terms without any token: {empty}")
    return [[_contains(tokenize_report(x), tt) for tt in term_tokens] for x in texts]


def findings_scores(hyps: Sequence[str], refs: Sequence[str], terms: Sequence[str]) -> dict[str, float]:
    """Micro accuracy / precision / recall / F1 of term presence, generated vs reference."""
    _check(hyps, refs)
    if not terms:
        raise ValueError("findings need at least one term")
    tp = fp = fn = tn = 0
    for ph, pr in zip(findings_labels(hyps, terms), findings_labels(refs, terms)):
        for a, b in zip(ph, pr):
            tp += a and b
            fp += a and not b
            fn += b and not a
            tn += not a and not b
    prec = tp / (tp + fp) if tp + fp else 0.0
    rec = tp / (tp + fn) if tp + fn else 0.0
    return {
        "findings_accuracy": (tp + tn) / (tp + fp + fn + tn),
        "findings_precision": prec,
        "findings_recall": rec,
        "findings_f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
    }


def _is_content(token: str) -> bool:
    """Not a stop-word or number; latin words need 3+ letters, a CJK character always counts."""
    if token in STOPWORDS or token.replace(".", "").isdigit():
        return False
    return len(token) > 2 or bool(re.match(f"[{_CJK}]", token))


def default_findings_terms(corpus: Sequence[str], k: int = 20) -> list[str]:
    """The ``k`` content unigrams/bigrams present in the most reports (see the module docstring)."""
    df: Counter[str] = Counter()
    for text in corpus:
        toks = tokenize_report(text)
        grams = {t for t in toks if _is_content(t)}
        grams |= {f"{a} {b}" for a, b in zip(toks, toks[1:]) if _is_content(a) and _is_content(b)}
        df.update(grams)
    n = len(corpus)
    ranked = sorted((t for t, c in df.items() if c < n), key=lambda t: (-df[t], t))
    return ranked[:k]


def report_generation_report(
    hyps: Sequence[str],
    refs: Sequence[str],
    terms: Sequence[str] | None = None,
    train_corpus: Sequence[str] | None = None,
    num_terms: int = 20,
    wordnet_dir: str | Path | None = None,
) -> dict[str, Any]:
    """All report metrics; ``meteor`` is ``None`` (reason in ``unavailable``) without WordNet.

    Args:
        hyps: generated reports.
        refs: reference reports, same order.
        terms: findings terms; None = :func:`default_findings_terms` of ``train_corpus`` (else of ``refs``).
        train_corpus: training reports for the default terms.
        num_terms: k of the default terms.
        wordnet_dir: local WordNet folder for METEOR.
    """
    _check(hyps, refs)
    out: dict[str, Any] = {"num_reports": len(hyps)}
    why: dict[str, str] = {}
    out.update(bleu(hyps, refs))
    wn, reason = _wordnet(wordnet_dir)
    out["meteor"] = meteor(hyps, refs, wn) if wn is not None else None
    if reason:
        why["meteor"] = reason
    out["meteor_exact_stem"] = meteor(hyps, refs, None)
    out["rouge_l"] = rouge_l(hyps, refs)
    out["cider"] = cider(hyps, refs)
    if terms is None:
        terms = default_findings_terms(train_corpus if train_corpus is not None else refs, num_terms)
        out["findings_terms_source"] = f"top {num_terms} of the {'training' if train_corpus else 'reference'} corpus"
    else:
        out["findings_terms_source"] = "given"
    out["findings_terms"] = list(terms)
    if terms:
        out.update(findings_scores(hyps, refs, terms))
    else:
        for k in ("findings_accuracy", "findings_precision", "findings_recall", "findings_f1"):
            out[k] = None
        why["findings"] = "no findings terms (none given and none found in the corpus)"
    out["unavailable"] = why
    return out
