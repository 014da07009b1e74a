"""Report-generation data: image(s) + free-text report, a tokenizer trained on the user's corpus.

Layouts (``root`` is a folder holding one of these files, or the file itself):

* ``reports.jsonl``: one JSON object per line, ``{"images": ["a.png", "b.png"], "report": "text"}``
  (``"images"`` may be a single string; an optional ``"group"`` keeps a patient in one split);
* ``reports.csv``: columns ``images,report[,group]`` with ``;``-separated image paths.

Image paths are absolute, relative to the file's folder, or relative to its ``images/`` folder.
USData pairs every report with two images; a report may have 1..``max_images`` images (a one-image
report repeats its image to fill the slots). Malformed lines, empty reports, missing or corrupt
images and reports with too many images are counted in a :class:`SkipReport`, never dropped silently.

The tokenizer is a byte-pair-encoding model trained with HF ``tokenizers`` on the training reports
(nothing is downloaded): NFKC + lowercase normalisation, SentencePiece-style ``▁`` word boundaries
(works for space-less scripts such as Chinese too), special tokens ``[PAD]`` = 0, ``[BOS]``,
``[EOS]``, ``[UNK]``. It saves to and loads from its JSON file (no pickle).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from echocare.data.labeled.media import load_gray, resize_image
from echocare.data.labeled.readers import ReadContext
from echocare.data.labeled.records import IMAGE_SUFFIXES, Record, SkipReport, pick_column, read_csv, resolve_item
from echocare.data.labeled.scan import Scanned, ScanOptions
from echocare.errors import DataError

logger = logging.getLogger(__name__)

__all__ = ["ReportDataset", "ReportRecord", "ReportSet", "ReportTokenizer", "collate_reports", "read_report",
           "scan_report_records", "scan_reports", "write_generated_reports"]

SPECIAL_TOKENS = ("[PAD]", "[BOS]", "[EOS]", "[UNK]")


@dataclass
class ReportRecord:
    """One report: image paths (relative to ``ReportSet.root`` or absolute), text, optional group."""

    images: list[str]
    report: str
    group: str | None = None


@dataclass
class ReportSet:
    """A scanned report corpus: usable records in file order, and the skips."""

    root: Path
    records: list[ReportRecord]
    skips: SkipReport

    @property
    def texts(self) -> list[str]:
        """The report texts (tokenizer training corpus)."""
        return [r.report for r in self.records]


def _find_file(root: Path) -> Path:
    if root.is_file():
        return root
    for name in ("reports.jsonl", "reports.csv"):
        if (root / name).is_file():
            return root / name
    raise FileNotFoundError(f"{root} has no reports.jsonl or reports.csv")


def _raw_rows(path: Path, skips: SkipReport) -> list[tuple[str, Any, Any, Any]]:
    """(source, images, report, group) per entry, images as given (list or str)."""
    rows = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
            src = f"{path.name}:{n}"
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                skips.add(src, "bad-json", str(err))
                continue
            if not isinstance(obj, dict) or "images" not in obj or "report" not in obj:
                skips.add(src, "missing-field", "each line needs 'images' and 'report'")
                continue
            rows.append((src, obj["images"], obj["report"], obj.get("group")))
    else:
        header, table = read_csv(path)
        img_col = pick_column(header, None, ("images", "image", "paths"), "images", path)
        txt_col = pick_column(header, None, ("report", "text", "findings"), "report", path)
        grp_col = pick_column(header, None, ("group", "patient", "patient_id", "case"), "group", path, required=False)
        for n, row in enumerate(table, start=2):
            images = [p.strip() for p in row.get(img_col, "").split(";") if p.strip()]
            rows.append((f"{path.name}:{n}", images, row.get(txt_col, ""), row.get(grp_col) if grp_col else None))
    return rows


def scan_reports(root: str | Path, max_images: int = 2, verify: bool = True) -> ReportSet:
    """Read ``reports.jsonl`` / ``reports.csv`` under ``root`` (see the module docstring).

    Raises:
        FileNotFoundError: no report file.
        ValueError: no usable report at all.
    """
    from PIL import Image

    path = _find_file(Path(root).expanduser())
    base = path.parent
    skips = SkipReport()
    records = []
    for src, images, report, group in _raw_rows(path, skips):
        images = [images] if isinstance(images, str) else images
        if not isinstance(report, str) or not report.strip():
            skips.add(src, "empty-report")
            continue
        if not isinstance(images, list) or not images or not all(isinstance(p, str) for p in images):
            skips.add(src, "no-images", "'images' must be a non-empty list of paths")
            continue
        if len(images) > max_images:
            skips.add(src, "too-many-images", f"{len(images)} images > max_images={max_images}")
            continue
        bad = None
        for p in images:
            f = resolve_item(base, p, "images")
            if not f.is_file() or f.suffix.lower() not in IMAGE_SUFFIXES:
                bad = ("missing-image", str(p))
                break
            if verify:
                try:
                    with Image.open(f) as im:
                        im.verify()
                except Exception as err:  # noqa: BLE001 - PIL raises many types for corrupt files
                    bad = ("corrupt-image", f"{p}: {type(err).__name__}")
                    break
        if bad:
            skips.add(src, *bad)
            continue
        rel = [resolve_item(base, p, "images").relative_to(base).as_posix()
               if not Path(p).is_absolute() else p for p in images]
        records.append(ReportRecord(rel, report.strip(), None if group in (None, "") else str(group)))
    if not records:
        raise DataError(f"{path}: no usable reports ({skips.count} skipped: {skips.by_reason()})")
    logger.info("report data %s: %d reports, %d skipped %s", path, len(records), skips.count,
                skips.by_reason() or "")
    return ReportSet(base, records, skips)


class ReportTokenizer:
    """BPE tokenizer trained on report texts (HF ``tokenizers``); ids 0..3 are PAD, BOS, EOS, UNK."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        ids = [tokenizer.token_to_id(t) for t in SPECIAL_TOKENS]
        if ids != [0, 1, 2, 3]:
            raise ValueError(f"tokenizer special tokens {SPECIAL_TOKENS} must have ids 0..3, got {ids}")
        self.pad_id, self.bos_id, self.eos_id, self.unk_id = ids

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 2000, min_frequency: int = 2) -> ReportTokenizer:
        """Train on ``texts`` (the training split's reports)."""
        from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

        tok = Tokenizer(models.BPE(unk_token="[UNK]"))
        tok.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase()])
        tok.pre_tokenizer = pre_tokenizers.Metaspace()
        tok.decoder = decoders.Metaspace()
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency,
                                      special_tokens=list(SPECIAL_TOKENS), show_progress=False)
        tok.train_from_iterator(list(texts), trainer)
        return cls(tok)

    @classmethod
    def load(cls, path: str | Path) -> ReportTokenizer:
        """Load a tokenizer JSON written by :meth:`save`."""
        from tokenizers import Tokenizer

        return cls(Tokenizer.from_file(str(path)))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON."""
        self.tok.save(str(path))

    @property
    def vocab_size(self) -> int:
        """Number of token ids (incl. specials)."""
        return int(self.tok.get_vocab_size())

    def encode(self, text: str, max_len: int) -> list[int]:
        """``[BOS] tokens [EOS]`` truncated to ``max_len`` ids (the EOS is kept)."""
        ids = self.tok.encode(text).ids[: max(0, max_len - 2)]
        return [self.bos_id, *ids, self.eos_id]

    def decode(self, ids: Iterable[int]) -> str:
        """Text of ``ids`` up to the first EOS, specials removed."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i not in (self.pad_id, self.bos_id):
                out.append(i)
        return self.tok.decode(out)


class ReportDataset(Dataset):
    """Items ``images`` (N, 1, S, S) with N = ``max_images``, ``tokens`` (L,) padded, ``length``, ``report``.

    Args:
        data: a scanned :class:`ReportSet`.
        tokenizer: the corpus tokenizer.
        img_size: model input side S.
        max_len: token ids per report incl. BOS/EOS (longer reports are truncated).
        max_images: image slots per report (fewer images repeat the last one).
        augment: weak brightness jitter (no flips: reports name sides).
        seed: augmentation seed.
    """

    def __init__(self, data: ReportSet, tokenizer: ReportTokenizer, img_size: int, max_len: int = 64,
                 max_images: int = 2, augment: bool = False, seed: int = 0) -> None:
        self.data, self.tokenizer = data, tokenizer
        self.size, self.max_len, self.max_images = int(img_size), int(max_len), int(max_images)
        self.augment, self.seed, self.epoch = augment, seed, 0

    def __len__(self) -> int:
        return len(self.data.records)

    def set_epoch(self, epoch: int) -> None:
        """Change the augmentation stream."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict[str, Any]:
        r = self.data.records[index]
        imgs = [resize_image(load_gray(self.data.root / p), self.size) for p in r.images]  # each (1, S, S)
        imgs += [imgs[-1]] * (self.max_images - len(imgs))
        images = torch.stack(imgs)  # (N, 1, S, S)
        if self.augment:
            rng = np.random.default_rng([self.seed, self.epoch, index])
            images = (images * float(rng.uniform(0.9, 1.1))).clamp_(0.0, 1.0)
        ids = self.tokenizer.encode(r.report, self.max_len)
        tokens = torch.full((self.max_len,), self.tokenizer.pad_id, dtype=torch.long)
        tokens[: len(ids)] = torch.tensor(ids, dtype=torch.long)
        return {"images": images, "tokens": tokens, "length": len(ids), "report": r.report, "index": index}


def collate_reports(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Stack: ``images`` (B, N, 1, S, S), ``tokens`` (B, L), ``length`` (B,), ``report`` list, ``index`` (B,)."""
    return {
        "images": torch.stack([i["images"] for i in items]),
        "tokens": torch.stack([i["tokens"] for i in items]),
        "length": torch.tensor([i["length"] for i in items], dtype=torch.long),
        "report": [i["report"] for i in items],
        "index": torch.tensor([i["index"] for i in items], dtype=torch.long),
    }


def write_generated_reports(path: str | Path, records: list[ReportRecord], generated: list[str]) -> Path:
    """Write ``{"images", "reference", "generated"}`` JSON lines, one per report, beside each other.

    Raises:
        ValueError: ``records`` and ``generated`` differ in length.
    """
    if len(records) != len(generated):
        raise ValueError(f"{len(records)} records but {len(generated)} generated reports")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as f:
        for r, g in zip(records, generated):
            f.write(json.dumps({"images": r.images, "reference": r.report, "generated": g}, ensure_ascii=False) + "\n")
    return path


def scan_report_records(root: Path, opts: ScanOptions, skips: SkipReport, max_images: int = 2) -> Scanned:
    """:func:`scan_reports` as a fine-tuning scanner: one :class:`Record` per report.

    ``path`` is the report's first image (what ``data.group_regex`` sees), ``target`` the report text,
    ``group`` the file's group, ``extra["images"]`` every image path.
    """
    found = scan_reports(root, max_images=max_images, verify=opts.verify)
    for item in found.skips.items:
        skips.add(item["source"], item["reason"], item["detail"])
    records = [Record(r.images[0], r.report, str(found.root), r.group, {"images": list(r.images)})
               for r in found.records]
    return Scanned(found.root, records, ["report"], 1, verified=True)


def read_report(r: Record, ctx: ReadContext, tokenizer: ReportTokenizer, max_len: int = 64,
                max_images: int = 2) -> dict[str, Any]:
    """``image`` (N, 1, S, S) with N = ``max_images`` (the last image repeated) and ``tokens`` (max_len,) padded.

    Bind ``tokenizer`` (and the lengths) with :func:`functools.partial` to get a reader.
    """
    paths = r.extra.get("images") or [r.path]
    imgs = [resize_image(load_gray(Path(r.root) / p), ctx.size) for p in paths]  # each (1, S, S)
    imgs += [imgs[-1]] * (max_images - len(imgs))
    ids = tokenizer.encode(r.target, max_len)
    tokens = torch.full((max_len,), tokenizer.pad_id, dtype=torch.long)
    tokens[: len(ids)] = torch.tensor(ids, dtype=torch.long)
    return {"image": torch.stack(imgs), "tokens": tokens}
