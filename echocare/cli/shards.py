"""``echocare shards build|inspect|phantom``: make and look at webdataset shards."""

from __future__ import annotations

import argparse
import sys
from typing import Any

FORMATS = ("png", "jpeg", "raw-zstd")


def register(subparsers: Any) -> None:
    """Add the ``shards`` verb and its sub-verbs."""
    parser = subparsers.add_parser("shards", help="build, inspect or synthesise webdataset shards",
                                   description="Build, inspect or synthesise webdataset shards.")
    sub = parser.add_subparsers(dest="shards_cmd", metavar="CMD")
    sub.required = True

    b = sub.add_parser("build", help="curate a manifest's datasets into shards")
    b.add_argument("--manifest", required=True, help="dataset manifest YAML (see docs/data.md)")
    b.add_argument("--out", required=True, help="output folder (a partial build there is resumed)")
    b.add_argument("--workers", type=int, default=1, help="decode processes (output does not depend on it)")
    b.add_argument("--format", choices=FORMATS, default=None,
                   help="sample image format, overriding the manifest's `format` (raw-zstd: lossless .npy.zst, "
                        "~4x faster to decode than PNG, larger; see docs/data.md)")
    b.set_defaults(func=_build)

    i = sub.add_parser("inspect", help="summarise shards and write a sample grid per dataset")
    i.add_argument("dir", help="shard folder")
    i.add_argument("--out", default=None, help="folder for the grids (default DIR/inspect)")
    i.add_argument("--per-dataset", type=int, default=16, help="images per grid")
    i.add_argument("--verify", action="store_true", help="check shard sha256 against index.json")
    i.set_defaults(func=_inspect)

    p = sub.add_parser("phantom", help="write synthetic labeled B-mode images as shards")
    p.add_argument("--n", type=int, required=True, help="number of images")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--size", type=int, default=256, help="image side in pixels")
    p.add_argument("--ontology", default=None, help="ontology YAML (default: packaged)")
    p.add_argument("--shard-max-count", type=int, default=10_000)
    p.add_argument("--format", choices=FORMATS, default="png", help="sample image format")
    p.set_defaults(func=_phantom)


def _build(args: argparse.Namespace) -> int:
    from echocare.data.build import build_shards
    from echocare.data.manifest import ManifestError

    try:
        index = build_shards(args.manifest, args.out, workers=args.workers, image_format=args.format)
    except ManifestError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    rejected = sum(index["rejected"].values())
    print(f"{index['total']} samples in {len(index['shards'])} shard(s) -> {args.out}; "
          f"{rejected} input(s) rejected (see {args.out}/build_report.jsonl)")
    return 0


def _inspect(args: argparse.Namespace) -> int:
    from echocare.data.inspect import format_summary, inspect_shards

    try:
        summary = inspect_shards(args.dir, out=args.out, per_dataset=args.per_dataset, verify=args.verify)
    except FileNotFoundError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(format_summary(summary))
    return 1 if summary["checksum_errors"] or summary["unreadable"] else 0


def _phantom(args: argparse.Namespace) -> int:
    from echocare.data.phantom import write_phantom_shards

    index = write_phantom_shards(args.out, args.n, seed=args.seed, image_size=args.size,
                                 ontology=args.ontology, shard_max_count=args.shard_max_count,
                                 image_format=args.format)
    print(f"{index['total']} phantom images in {len(index['shards'])} shard(s) -> {args.out}")
    return 0
