"""``echocare catalog list|show|manifest|gaps``: the public-dataset catalogue (EchoAtlas, seed 001/003)."""

from __future__ import annotations

import argparse
import json
from typing import Any

from echocare.cli._common import error_exit

_LEVELS = {"part": 0, "organ": 1, "structure": 2}


def register(subparsers: Any) -> None:
    """Add the ``catalog`` verb and its sub-verbs."""
    parser = subparsers.add_parser("catalog", help="public ultrasound datasets: list, cards, manifests, gaps",
                                   description="The EchoAtlas catalogue of public ultrasound datasets "
                                               "(SonoDQS, licences, ready-made shards manifests).")
    sub = parser.add_subparsers(dest="catalog_cmd", metavar="CMD")
    sub.required = True

    ls = sub.add_parser("list", help="list datasets, optionally filtered")
    ls.add_argument("--anatomy", help="ontology node id or synonym; keeps datasets at or below it")
    ls.add_argument("--task", help="e.g. segmentation, classification, detection")
    ls.add_argument("--licence", help="SPDX id as in the catalogue, e.g. CC-BY-4.0, or 'unknown'")
    ls.add_argument("--format", choices=("table", "json"), default="table")
    ls.set_defaults(func=_list)

    sh = sub.add_parser("show", help="one dataset's card")
    sh.add_argument("name", help="id, name or alias (e.g. busi, 'Fetal Planes DB')")
    sh.set_defaults(func=_show)

    m = sub.add_parser("manifest", help="a shards manifest for a dataset in its published layout")
    m.add_argument("name", help="id, name or alias")
    m.add_argument("--root", required=True, help="folder the dataset's release was unpacked to")
    m.add_argument("--out", required=True, help="manifest YAML to write")
    m.add_argument("--image-size", type=int, default=256, help="manifest image_size (default 256)")
    m.set_defaults(func=_manifest)

    g = sub.add_parser("gaps", help="ontology anatomies with few or no public datasets (table + bar plot)")
    g.add_argument("--level", choices=tuple(_LEVELS), default="organ")
    g.add_argument("--few", type=int, default=2, help="'few' means at most this many datasets (default 2)")
    g.add_argument("--plot", default="catalog_gaps.png", help="bar plot PNG (default catalog_gaps.png)")
    g.add_argument("--format", choices=("table", "json"), default="table")
    g.set_defaults(func=_gaps)


def _load() -> Any:
    from echocare.catalog import load_catalog

    return load_catalog()


def _row(e: Any) -> dict[str, Any]:
    from echocare.catalog import entry_sonodqs

    d = e.to_dict()
    d["sonodqs"] = entry_sonodqs(e)
    return d


def _list(args: argparse.Namespace) -> int:
    from echocare.catalog.catalog import TASKS
    from echocare.ontology import load_ontology

    anatomy = args.anatomy
    if anatomy:
        try:
            anatomy = load_ontology().validate_path(anatomy)
        except (KeyError, ValueError) as err:
            return error_exit("catalog list", str(err).strip("'\""))
    if args.task and args.task.lower() not in TASKS:
        return error_exit("catalog list", f"unknown task {args.task!r}; expected one of {', '.join(TASKS)}")
    rows = [_row(e) for e in _load().filter(anatomy, args.task, args.licence)]
    if args.format == "json":
        print(json.dumps(rows, indent=1))
        return 0
    print(f"{'id':<28} {'access':<10} {'licence':<16} {'SonoDQS':>7} {'tier':<8} {'published':<9} anatomy")
    for r in rows:
        s = r["sonodqs"]
        print(f"{r['id']:<28} {r['access']:<10} {r['licence']:<16} {s['score']:>7.2f} {s['tier']:<8} "
              f"{s['published_tier']:<9} {', '.join(r['anatomy']) or 'unknown'}")
    print(f"{len(rows)} dataset(s)")
    return 0


def _show(args: argparse.Namespace) -> int:
    from echocare.catalog import TEMPLATES

    try:
        e = _load().get(args.name)
    except KeyError as err:
        return error_exit("catalog show", str(err).strip("'\""))
    r = _row(e)
    s = r.pop("sonodqs")
    lines = [f"{e.name}  [{e.id}]"]
    for k, v in r.items():
        if k in ("id", "name", "shared"):
            continue
        if isinstance(v, dict):
            v = ", ".join(f"{a}={b}" for a, b in v.items())
        elif isinstance(v, list):
            v = ", ".join(v) if v else "unknown"
        lines.append(f"  {k:<15} {v}")
    lines.append(f"  {'SonoDQS':<15} {s['score']:.2f} -> {s['tier']} (published: {s['published_tier']}; "
                 f"computed from what the catalogue records)")
    lines.append(f"  {'not recorded':<15} {', '.join(s['missing'])}")
    tpl = TEMPLATES.get(e.id)
    lines.append(f"  {'manifest':<15} " + (f"echocare catalog manifest {e.id} --root DIR --out M.yaml; layout: "
                                          f"{tpl.layout}" if tpl else "no template (write the manifest by hand)"))
    print("\n".join(lines))
    return 0


def _manifest(args: argparse.Namespace) -> int:
    from pathlib import Path

    import yaml

    from echocare.catalog import TemplateError, manifest_for

    try:
        doc = manifest_for(_load(), args.name, args.root, image_size=args.image_size)
    except (KeyError, TemplateError) as err:
        return error_exit("catalog manifest", str(err).strip("'\""))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(yaml.safe_dump(doc, sort_keys=False, width=120))
    names = ", ".join(d["name"] for d in doc["datasets"])
    print(f"manifest for {names} -> {out}; build it with: echocare shards build --manifest {out} --out SHARDS")
    return 0


def _gaps(args: argparse.Namespace) -> int:
    from echocare.catalog import format_gaps, gaps, plot_coverage
    from echocare.ontology import load_ontology

    if args.few < 0:
        return error_exit("catalog gaps", f"--few must be >= 0, got {args.few}")
    cat, onto = _load(), load_ontology()
    rows = gaps(cat, onto, level=_LEVELS[args.level], few=args.few)
    plot = plot_coverage(cat, onto, args.plot, level=_LEVELS[args.level], few=args.few)
    print(json.dumps(rows, indent=1) if args.format == "json" else format_gaps(rows))
    print(f"bar plot -> {plot}")
    return 0
