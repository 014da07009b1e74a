"""``echocare shards inspect``: summary of a shard folder and a PNG grid per dataset."""

from __future__ import annotations

import io
import json
import logging
import math
import tarfile
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw

from echocare.data.codecs import decode_raw_zstd, is_zstd
from echocare.data.writer import list_shard_files, sha256_file

logger = logging.getLogger(__name__)

_IMAGE_EXTS = ("png", "jpg", "jpeg", "npy.zst")


def _iter_samples(shard: Path) -> Any:
    """Yield ``(key, image_bytes, meta)`` from one shard, pairing members by key."""
    pending: dict[str, dict[str, Any]] = {}
    with tarfile.open(shard) as tar:
        for member in tar:
            if not member.isfile():
                continue
            name = member.name
            base = name.rsplit("/", 1)[-1]
            if "." not in base:
                continue
            key = name[: len(name) - len(base)] + base.split(".", 1)[0]
            ext = base.split(".", 1)[1]
            data = tar.extractfile(member).read()  # type: ignore[union-attr]
            slot = pending.setdefault(key, {})
            slot[ext] = data
            img = next((slot[e] for e in _IMAGE_EXTS if e in slot), None)
            if img is not None and "json" in slot:
                yield key, img, json.loads(slot["json"])
                del pending[key]


def _open_image(data: bytes) -> Image.Image:
    """A shard image member as a PIL image (``raw-zstd`` decoded here, PNG/JPEG by PIL)."""
    return Image.fromarray(decode_raw_zstd(data)) if is_zstd(data) else Image.open(io.BytesIO(data))


def _grid(thumbs: list[tuple[Image.Image, str]], cell: int = 160) -> Image.Image:
    cols = max(1, math.ceil(math.sqrt(len(thumbs))))
    rows = max(1, math.ceil(len(thumbs) / cols))
    grid = Image.new("L", (cols * cell, rows * cell), 0)
    draw = ImageDraw.Draw(grid)
    for i, (im, caption) in enumerate(thumbs):
        im = im.convert("L")
        im.thumbnail((cell - 4, cell - 16))
        x, y = (i % cols) * cell, (i // cols) * cell
        grid.paste(im, (x + (cell - im.width) // 2, y + 14))
        draw.text((x + 2, y + 1), caption[:26], fill=255)
    return grid


def inspect_shards(
    shard_dir: str | Path,
    out: str | Path | None = None,
    per_dataset: int = 16,
    verify: bool = False,
) -> dict[str, Any]:
    """Summarise a shard folder and write one sample grid per dataset.

    Args:
        shard_dir: folder with ``shard-*.tar`` (and normally ``index.json``).
        out: folder for the grids (default ``shard_dir/inspect``).
        per_dataset: images per grid.
        verify: also check every shard's sha256 against ``index.json``.

    Returns:
        ``{"index", "counted", "grids", "rejected", "checksum_errors", "unreadable", "shards"}``:
        the index document (or ``None``), per-dataset sample counts read from the
        tars, written grid paths, rejected-input counts by reason, shards whose
        sha256 differs from the index, shards that cannot be read (name -> error)
        and the number of shard files.
    """
    root = Path(shard_dir)
    shards = list_shard_files(root)
    if not shards:
        raise FileNotFoundError(f"no shard-NNNNNN.tar files in {str(root)!r}")
    index = json.loads((root / "index.json").read_text()) if (root / "index.json").is_file() else None
    counted: dict[str, int] = {}
    thumbs: dict[str, list[tuple[Image.Image, str]]] = {}
    unreadable: dict[str, str] = {}
    for shard in shards:
        try:
            for _key, img, meta in _iter_samples(shard):
                ds = str(meta.get("dataset", "?"))
                counted[ds] = counted.get(ds, 0) + 1
                if len(thumbs.setdefault(ds, [])) < per_dataset:
                    label = (meta.get("paths") or ["unlabeled"])[0]
                    frame = meta.get("frame")
                    thumbs[ds].append((_open_image(img), label + ("" if frame is None else f" f{frame}")))
        except (tarfile.TarError, OSError, ValueError) as err:
            logger.error("cannot read %s: %s", shard, err)
            unreadable[shard.name] = f"{type(err).__name__}: {err}".splitlines()[0]
    errors = []
    if verify:
        if index is None:
            raise FileNotFoundError(f"--verify needs {root / 'index.json'}")
        for rec in index["shards"]:
            path = root / rec["name"]
            if not path.is_file() or sha256_file(path) != rec["sha256"]:
                errors.append(rec["name"])
    out_dir = Path(out) if out is not None else root / "inspect"
    out_dir.mkdir(parents=True, exist_ok=True)
    grids = {}
    for ds, items in sorted(thumbs.items()):
        path = out_dir / f"{ds}.png"
        _grid(items).save(path)
        grids[ds] = str(path)
    rejected: dict[str, int] = {}
    report = root / "build_report.jsonl"
    if report.is_file():
        for line in report.read_text().splitlines():
            if line.strip():
                reason = json.loads(line).get("reason", "?")
                rejected[reason] = rejected.get(reason, 0) + 1
    return {"index": index, "counted": dict(sorted(counted.items())), "grids": grids,
            "rejected": dict(sorted(rejected.items())), "checksum_errors": errors, "unreadable": unreadable,
            "shards": len(shards)}


def format_summary(summary: dict[str, Any]) -> str:
    """Human-readable text of an :func:`inspect_shards` result."""
    idx = summary["index"] or {}
    lines = [f"shards: {summary['shards']}   samples: {sum(summary['counted'].values())}"
             + (f"   (index.json total: {idx.get('total')})" if idx else "   (no index.json)")]
    if idx:
        lines.append(f"image size: {idx.get('image_size')}   format: {idx.get('format', 'png')}   "
                     f"ontology: {str(idx.get('ontology_hash', ''))[:12]}")
    lines.append("datasets:")
    names = sorted(set(summary["counted"]) | set(idx.get("datasets", {})))
    for ds in names:
        lines.append(f"  {ds:<28} {summary['counted'].get(ds, 0):>8}")
    if idx.get("labels"):
        lines.append("labels:")
        for path, n in idx["labels"].items():
            lines.append(f"  {path:<28} {n:>8}")
        lines.append(f"  {'(unlabeled)':<28} {idx.get('unlabeled', 0):>8}")
    if summary["rejected"]:
        lines.append("rejected inputs (build_report.jsonl):")
        for reason, n in summary["rejected"].items():
            lines.append(f"  {reason:<28} {n:>8}")
    if summary["checksum_errors"]:
        lines.append(f"CHECKSUM MISMATCH: {', '.join(summary['checksum_errors'])}")
    for name, err in summary.get("unreadable", {}).items():
        lines.append(f"UNREADABLE {name}: {err}")
    for ds, path in summary["grids"].items():
        lines.append(f"grid {ds}: {path}")
    return "\n".join(lines)
