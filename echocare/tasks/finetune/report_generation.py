"""Report generation (seed 003 §4.5.7): 1–2 images → a free-text report.

The model is the echocare encoder + :class:`~echocare.models.heads.report.ReportHead` (visual tokens,
transformer decoder, teacher forcing; greedy or beam decoding with ``eval.beam_size``). The tokenizer
is a BPE model trained on the *training split's* reports when fine-tuning starts (HF ``tokenizers``,
nothing downloaded), written to ``RUN/tokenizer.json`` and named in ``model.safetensors``'s
``task_state`` so ``evaluate`` rebuilds it; the default findings terms are fixed from the training
reports at the same time. Metrics: BLEU-1…4, METEOR (null + reason without a local WordNet),
ROUGE-L, CIDEr-D, findings accuracy / precision / recall / F1. Generated reports are written beside
their references (``generated_reports.jsonl``).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import os
from pathlib import Path
from typing import Any

from echocare.data.labeled.records import Record
from echocare.data.labeled.reports import (
    ReportRecord,
    ReportTokenizer,
    read_report,
    scan_report_records,
    write_generated_reports,
)
from echocare.metrics.report import default_findings_terms, report_generation_report
from echocare.tasks.spec import MetricOptions, RunContext, TaskSpec, require_modules

logger = logging.getLogger(__name__)

MAX_IMAGES = 2  # images per report (USData: two); the head's ``max_images``
TOKENIZER_FILE = "tokenizer.json"
OUTPUT_FILE = "generated_reports.jsonl"


def _unbound(*_args: Any, **_kwargs: Any) -> Any:
    raise RuntimeError("report_generation needs its tokenizer: bind the task first (spec.bound(RunContext(...)))")


def _head_args(num_outputs: int, temporal: bool, targets: list, vocab_size: int, max_len: int) -> dict[str, Any]:
    return {"vocab_size": vocab_size, "max_len": max_len, "max_images": MAX_IMAGES}


def collect(pred: dict[str, Any], batch: dict[str, Any], records: list[Record], out: dict[str, list],
            tokenizer: ReportTokenizer) -> None:
    """Generated text (decoded), reference text and image paths per report."""
    out.setdefault("generated", []).extend(tokenizer.decode(ids) for ids in pred["tokens"])
    out.setdefault("reference", []).extend(str(r.target) for r in records)
    out.setdefault("images", []).extend(list(r.extra.get("images") or [r.path]) for r in records)


def metrics(pred: dict[str, list], class_names: list[str], opts: MetricOptions,
            terms: list[str] | None = None) -> dict[str, Any]:
    """Report metrics; findings terms: ``eval.findings_terms``, else those fixed from the training reports."""
    given = list(opts.findings_terms)
    report = report_generation_report(pred["generated"], pred["reference"], terms=given or terms,
                                      num_terms=opts.num_findings_terms, wordnet_dir=opts.wordnet_dir)
    report["findings_terms_source"] = "eval.findings_terms" if given else "training reports"
    return report


def save_reports(collected: dict[str, list], records: list[Record], directory: Path) -> list[Path]:
    """``directory/generated_reports.jsonl``: ``{"images", "reference", "generated"}`` per report."""
    recs = [ReportRecord(list(i), r) for i, r in zip(collected.get("images", []), collected.get("reference", []))]
    return [write_generated_reports(Path(directory) / OUTPUT_FILE, recs, list(collected.get("generated", [])))]


def _tokenizer(ctx: RunContext, vocab_size: int) -> tuple[ReportTokenizer, str]:
    if ctx.saved is not None:  # rebuilding a saved model
        name = str(ctx.saved.get("tokenizer", ""))
        path = Path(ctx.directory) / name
        if not name or not path.is_file():
            raise FileNotFoundError(f"the report model's tokenizer {path} is missing (it is written next to "
                                    "model.safetensors when fine-tuning; keep the two together)")
        return ReportTokenizer.load(path), name
    path = Path(ctx.directory) / TOKENIZER_FILE
    if ctx.resume and path.is_file():
        logger.info("report tokenizer: reusing %s (resumed run)", path)
        return ReportTokenizer.load(path), TOKENIZER_FILE
    texts = [str(r.target) for r in ctx.train_records]
    tok = ReportTokenizer.train(texts, vocab_size=vocab_size)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tok.save(tmp)
    tmp.replace(path)
    logger.info("report tokenizer: %d ids trained on %d training reports -> %s", tok.vocab_size, len(texts), path)
    return tok, TOKENIZER_FILE


def bind(spec: TaskSpec, ctx: RunContext) -> tuple[TaskSpec, dict[str, Any]]:
    """Train (or load) the tokenizer and fix the default findings terms; bind reader, head size, decoding."""
    require_modules(spec.name, ("tokenizers", "nltk", "rouge_score", "pycocoevalcap"), "report")
    head = dict(ctx.head_options)
    max_len = int(head.get("max_len", 64))
    tok, name = _tokenizer(ctx, int(head.get("vocab_size", 2000)))
    if "vocab_size" in head and int(head["vocab_size"]) < tok.vocab_size:
        raise ValueError(f"model.head.vocab_size={head['vocab_size']} is smaller than the trained tokenizer "
                         f"({tok.vocab_size} ids: the corpus alphabet alone needs that many); raise it")
    if ctx.saved is not None and "findings_terms" in ctx.saved:
        terms = list(ctx.saved["findings_terms"])
    else:
        terms = default_findings_terms([str(r.target) for r in ctx.train_records], ctx.options.num_findings_terms)
    bound = dataclasses.replace(
        spec,
        head_args=functools.partial(_head_args, vocab_size=tok.vocab_size, max_len=max_len),
        read=functools.partial(read_report, tokenizer=tok, max_len=max_len, max_images=MAX_IMAGES),
        collect=functools.partial(collect, tokenizer=tok),
        metrics=functools.partial(metrics, terms=terms),
        predict_kwargs={"beam_size": ctx.options.beam_size},
    )
    return bound, {"tokenizer": name, "findings_terms": terms, "max_len": max_len}


SPEC = TaskSpec(
    name="report_generation", head="report_generation", head_args=_unbound,
    scan=functools.partial(scan_report_records, max_images=MAX_IMAGES), read=_unbound, collect=_unbound,
    metrics=_unbound, headline=("bleu_1", "bleu_2", "bleu_3", "bleu_4", "meteor", "rouge_l", "cider", "findings_f1"),
    hflip_safe=False, description="report generation (ROOT/reports.jsonl or reports.csv; 1-2 images per report)",
    bind=bind, save_outputs=save_reports,
)
