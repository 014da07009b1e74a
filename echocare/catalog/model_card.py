"""Model cards with SonoMQS for exported runs.

:func:`model_card` takes plain arguments (the run's resolved config, its data sources, an optional
evaluation, code availability and authoring statements) and returns the markdown card and the 12
SonoMQS criteria (seed 001 §4.3). :func:`data_sources_from_shards` lists the datasets of a shard folder
with their sample counts, licences and catalogue matches, for the card's data section.

How each criterion is decided:

* ``training_data_public``: every data source is a catalogued public dataset (an unmatched source, e.g.
  a hospital's own folder, makes it "no"; no known source is "no" too);
* ``weights_public``: stated by the author (``statements["weights_public"]``), never assumed;
* ``code_shared`` and ``code_availability_statement``: a code repository is named (the card then writes
  the statement);
* ``training_details``: the resolved config is non-empty (the card prints it);
* ``study_objective``, ``funding_statement``, ``ethics_statement``, ``competing_interests``,
  ``authorship``, ``contribution_statement``: the author's statements (``objective``, ``funding``,
  ``ethics``, ``competing_interests``, ``authors``, ``contributions``) are given and non-empty;
* ``software_citations``: always "yes": the card cites echocare, PyTorch and timm with versions.
"""

from __future__ import annotations

import json
import logging
import tarfile
from pathlib import Path
from typing import Any

import timm
import torch
import yaml

from echocare import __version__
from echocare.catalog.catalog import UNKNOWN, Catalog, load_catalog
from echocare.catalog.scores import SONOMQS_CRITERIA, sonomqs

logger = logging.getLogger(__name__)

STATEMENT_KEYS = ("title", "objective", "funding", "ethics", "competing_interests", "authors", "contributions",
                  "weights_public")
_STATEMENT_CRITERIA = {"objective": "study_objective", "funding": "funding_statement", "ethics": "ethics_statement",
                       "competing_interests": "competing_interests", "authors": "authorship",
                       "contributions": "contribution_statement"}


def _first_metadata(shard_files: list[Path], wanted: set[str]) -> dict[str, dict[str, Any]]:
    """The metadata of the first sample of each wanted dataset (stops once all are seen)."""
    found: dict[str, dict[str, Any]] = {}
    for path in shard_files:
        try:
            with tarfile.open(path) as tar:
                for member in tar:
                    if not member.name.endswith(".json"):
                        continue
                    f = tar.extractfile(member)
                    doc = json.loads(f.read()) if f is not None else {}
                    name = doc.get("dataset")
                    if name in wanted and name not in found:
                        found[name] = dict(doc.get("metadata") or {})
                        if len(found) == len(wanted):
                            return found
        except (tarfile.TarError, OSError, ValueError) as err:
            logger.warning("model card: cannot read %s (%s); its datasets' licences come from the catalogue", path, err)
    return found


def data_sources_from_shards(shards: str | Path, catalog: Catalog | None = None) -> list[dict[str, Any]]:
    """Datasets of a shard folder (``index.json``) with samples, licence, URL and catalogue id.

    The licence is the one the manifest recorded in the samples' metadata when it is known, else the
    catalogue's, else ``unknown``. A dataset matches the catalogue by the ``catalogue_id`` that
    ``echocare catalog manifest`` writes into the metadata, or by its name.

    Raises:
        FileNotFoundError: no ``index.json`` in ``shards``.
    """
    folder = Path(shards)
    index_path = folder / "index.json"
    if not index_path.is_file():
        raise FileNotFoundError(f"{index_path} not found (expected a folder written by `echocare shards build`)")
    index = json.loads(index_path.read_text())
    counts: dict[str, int] = dict(index.get("datasets") or {})
    files = [folder / s["name"] for s in index.get("shards", []) if (folder / s.get("name", "")).is_file()]
    metas = _first_metadata(files, set(counts))
    out = []
    for name, n in sorted(counts.items()):
        meta = metas.get(name, {})
        entry = None
        if catalog is not None:
            cid = meta.get("catalogue_id")
            entry = catalog.find(str(cid)) if cid else None
            entry = entry or catalog.find(name)
        licence = meta.get("licence")
        if licence in (None, "", UNKNOWN):
            licence = entry.licence if entry is not None else UNKNOWN
        out.append({"name": name, "samples": int(n), "licence": str(licence),
                    "catalogue_id": entry.id if entry is not None else None,
                    "access": entry.access if entry is not None else UNKNOWN,
                    "url": entry.url if entry is not None else str(meta.get("url") or UNKNOWN)})
    return out


def sonomqs_criteria(config: dict[str, Any], data_sources: list[dict[str, Any]], code: dict[str, Any],
                     statements: dict[str, Any]) -> dict[str, bool]:
    """The 12 SonoMQS answers for an exported run (see the module docstring for each rule)."""
    code_shared = bool(code.get("repository"))
    crit = {
        "training_data_public": bool(data_sources) and all(s.get("catalogue_id") for s in data_sources),
        "weights_public": statements.get("weights_public") is True,
        "code_shared": code_shared,
        "training_details": bool(config),
        "code_availability_statement": code_shared,
        "software_citations": True,
    }
    for key, criterion in _STATEMENT_CRITERIA.items():
        crit[criterion] = bool(str(statements.get(key) or "").strip())
    return {k: crit[k] for k in SONOMQS_CRITERIA}


def _section(title: str, body: str) -> str:
    return f"## {title}\n\n{body.strip()}\n"


def model_card(config: dict[str, Any], data_sources: list[dict[str, Any]], evaluation: dict[str, Any] | None,
               code: dict[str, Any], statements: dict[str, Any] | None = None,
               software: dict[str, str] | None = None) -> tuple[str, dict[str, bool]]:
    """Markdown model card and its SonoMQS criteria.

    Args:
        config: the run's resolved config (printed as YAML; empty means no training details).
        data_sources: rows ``{name, samples, licence, catalogue_id, access, url}`` (see
            :func:`data_sources_from_shards`).
        evaluation: metric name -> value (or text), or None when the model was not evaluated.
        code: ``{"repository": URL, "version": str, "licence": str}``.
        statements: optional author statements (``STATEMENT_KEYS``); missing ones are reported as missing.
        software: package -> version, cited in the card (default: echocare, torch, timm as installed).

    Returns:
        (markdown, criteria), criteria mapping each of the 12 SonoMQS questions to True / False.
    """
    statements = dict(statements or {})
    unknown = set(statements) - set(STATEMENT_KEYS)
    if unknown:
        raise ValueError(f"unknown model-card statement(s) {sorted(unknown)}; allowed: {', '.join(STATEMENT_KEYS)}")
    if software is None:
        software = {"echocare": __version__, "torch": torch.__version__, "timm": timm.__version__}
    crit = sonomqs_criteria(config, data_sources, code, statements)
    score = sonomqs(crit)
    parts = [f"# {statements.get('title') or 'echocare model card'}\n"]
    parts.append(_section("Objective", str(statements.get("objective") or "_not stated_")))
    rows = ["| dataset | samples | licence | access | catalogue | URL |", "|---|---:|---|---|---|---|"]
    rows += [f"| {s['name']} | {s.get('samples', UNKNOWN)} | {s.get('licence', UNKNOWN)} | {s.get('access', UNKNOWN)} | "
             f"{s.get('catalogue_id') or 'not catalogued'} | {s.get('url', UNKNOWN)} |" for s in data_sources]
    parts.append(_section("Training data", "\n".join(rows) if data_sources else "_no data source recorded_"))
    cfg = yaml.safe_dump(config, sort_keys=True).strip() if config else "_no resolved config found_"
    parts.append(_section("Training configuration", f"```yaml\n{cfg}\n```" if config else cfg))
    if evaluation:
        ev = "\n".join(f"| {k} | {v} |" for k, v in evaluation.items())
        parts.append(_section("Evaluation", f"| metric | value |\n|---|---|\n{ev}"))
    else:
        parts.append(_section("Evaluation", "_not evaluated_"))
    if code.get("repository"):
        avail = (f"The code that trained this model is available at {code['repository']} (version "
                 f"{code.get('version', UNKNOWN)}, licence {code.get('licence', UNKNOWN)}).")
    else:
        avail = "_no code repository named_"
    parts.append(_section("Code availability", avail))
    weights = "public" if crit["weights_public"] else "not stated to be public"
    parts.append(_section("Weights", f"Model weights: {weights}."))
    for key, title in (("authors", "Authors"), ("contributions", "Author contributions"), ("funding", "Funding"),
                       ("ethics", "Ethics approval"), ("competing_interests", "Competing interests")):
        parts.append(_section(title, str(statements.get(key) or "_not stated_")))
    cites = "\n".join(f"- {k} {v}" for k, v in software.items())
    parts.append(_section("Software", cites))
    table = "\n".join(f"| {k} | {'yes' if v else 'no'} |" for k, v in crit.items())
    parts.append(_section("SonoMQS", f"SonoMQS = {sum(crit.values())}/12 = {score:.2f} (seed 001 §4.3: reporting "
                          f"quality, not task performance)\n\n| criterion | |\n|---|---|\n{table}"))
    return "\n".join(parts), crit


CARD_FILE = "model_card.yaml"  # optional, in the run directory: STATEMENT_KEYS + code_repository + evaluation


def _run_shards(config: dict[str, Any], run_dir: Path) -> Path | None:
    data = config.get("data") if isinstance(config.get("data"), dict) else {}
    spec = str(data.get("shards") or "")
    for cand in (Path(spec), run_dir / spec):
        if spec and (cand / "index.json").is_file():
            return cand
    if spec:
        logger.warning("model card: data.shards %r is not a local shard folder with index.json; "
                       "the card lists no data source", spec)
    return None


def export_model_card(config: dict[str, Any], run_dir: str | Path, out: str | Path,
                      catalog: Catalog | None = None) -> tuple[Path, dict[str, bool]]:
    """Write ``<out stem>.model-card.md`` next to an export; return its path and the SonoMQS criteria.

    Data sources come from the run's ``data.shards`` folder (when local), author statements, the code
    repository (``code_repository``) and an ``evaluation`` mapping from ``RUN/model_card.yaml`` when present,
    and the evaluation otherwise from ``RUN/metrics.json``'s ``headline`` (fine-tuning runs).
    """
    run_dir, out = Path(run_dir), Path(out)
    card_file = run_dir / CARD_FILE
    extra: dict[str, Any] = {}
    if card_file.is_file():
        extra = yaml.safe_load(card_file.read_text()) or {}
        if not isinstance(extra, dict):
            raise ValueError(f"{card_file}: expected a mapping of {', '.join(STATEMENT_KEYS)}, code_repository, "
                             "evaluation")
    evaluation = extra.pop("evaluation", None)
    metrics = run_dir / "metrics.json"
    if evaluation is None and metrics.is_file():
        doc = json.loads(metrics.read_text())
        evaluation = doc.get("headline") if isinstance(doc, dict) else None
    code = {"repository": extra.pop("code_repository", None), "version": __version__, "licence": "Apache-2.0"}
    shards = _run_shards(config, run_dir)
    sources = data_sources_from_shards(shards, catalog or load_catalog()) if shards is not None else []
    text, crit = model_card(config, sources, evaluation, code, extra)
    path = out.with_name(out.stem + ".model-card.md")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    tmp.replace(path)
    return path, crit
