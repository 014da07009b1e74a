"""Resolve a shard specification into a list of URLs and find the matching ``index.json``.

Accepted forms: a directory (``DIR/*.tar`` sorted, ``DIR/index.json`` read when present), a local
path or glob, a brace pattern (``shard-{000000..000009}.tar``), ``pipe:`` commands and URLs
(``http://``, ``s3://``, ... opened by webdataset's ``gopen``), or a list of any of these.
"""

from __future__ import annotations

import glob
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from webdataset.shardlists import expand_urls

from echocare.errors import DataError

logger = logging.getLogger(__name__)

INDEX_NAME = "index.json"


def is_remote(url: str) -> bool:
    """True for ``pipe:`` commands and ``scheme://`` URLs (never checked for existence)."""
    return url.startswith("pipe:") or "://" in url


def expand_shards(shards: str | os.PathLike | Sequence[str | os.PathLike]) -> list[str]:
    """Expand a shard specification into an ordered list of shard URLs/paths.

    Raises:
        ValueError: nothing to read (empty list, directory without ``*.tar``).
        FileNotFoundError: a local shard path that does not exist (named in the message).
    """
    specs = [shards] if isinstance(shards, (str, os.PathLike)) else list(shards)
    if not specs:
        raise DataError("no shards given")
    urls: list[str] = []
    for spec in specs:
        spec = os.fspath(spec)
        if not is_remote(spec) and os.path.isdir(spec):
            found = sorted(glob.glob(os.path.join(spec, "*.tar")))
            if not found:
                raise DataError(f"shard directory {spec!r} contains no *.tar files")
            urls.extend(found)
            continue
        for url in expand_urls(spec):
            if is_remote(url):
                urls.append(url)
            elif glob.has_magic(url):
                found = sorted(glob.glob(url))
                if not found:
                    raise FileNotFoundError(f"shard pattern {url!r} matches no file")
                urls.extend(found)
            elif not os.path.isfile(url):
                raise FileNotFoundError(f"shard file not found: {url!r}")
            else:
                urls.append(url)
    if not urls:
        raise DataError(f"shard specification {shards!r} expands to no shards")
    return urls


def read_index(path: str | os.PathLike) -> dict[str, Any]:
    """Load and sanity-check an ``index.json``.

    Raises:
        ValueError: unreadable JSON or missing ``shards`` list (the path is named).
    """
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"cannot read shard index {os.fspath(path)!r}: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("shards"), list):
        raise DataError(f"shard index {os.fspath(path)!r} has no 'shards' list")
    for i, entry in enumerate(doc["shards"]):
        if not isinstance(entry, dict) or "name" not in entry or "count" not in entry:
            raise DataError(f"shard index {os.fspath(path)!r}: entry {i} lacks 'name'/'count': {entry!r}")
    datasets = doc.get("datasets", {})
    if not isinstance(datasets, dict):
        raise DataError(f"shard index {os.fspath(path)!r}: 'datasets' must be a mapping")
    return doc


def _with_paths(doc: dict[str, Any], directory: str) -> dict[str, Any]:
    """Attach the absolute local path of every shard entry (so equal names in two dirs stay apart)."""
    for entry in doc["shards"]:
        entry["path"] = os.path.abspath(os.path.join(directory, str(entry["name"])))
    return doc


def merge_indexes(docs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Combine the indexes of several shard directories (counts summed, shard lists concatenated)."""
    if len(docs) == 1:
        return dict(docs[0])
    merged: dict[str, Any] = {"version": 1, "shards": [], "datasets": {}, "labels": {}, "total": 0}
    for doc in docs:
        merged["shards"].extend(doc["shards"])
        for field_name in ("datasets", "labels"):
            for key, n in (doc.get(field_name) or {}).items():
                merged[field_name][key] = merged[field_name].get(key, 0) + int(n)
        merged["total"] += int(doc.get("total") or sum(int(e["count"]) for e in doc["shards"]))
    for field_name in ("ontology_hash", "image_size"):
        values = {doc.get(field_name) for doc in docs}
        if len(values) > 1:
            logger.warning("shard directories disagree on %s: %s", field_name, sorted(map(str, values)))
        merged[field_name] = values.pop() if len(values) == 1 else None
    return merged


def locate_index(shards: Any, urls: Sequence[str], index: str | os.PathLike | Mapping | None) -> dict[str, Any] | None:
    """Find the index for a shard spec: explicit ``index`` (path or dict) > ``DIR/index.json`` of every
    directory spec (merged) > ``index.json`` next to the shards when they are all local in one directory.
    Shards of an explicit index are matched by file name, the others by absolute path."""
    if isinstance(index, Mapping):
        return dict(index)
    if index is not None:
        return read_index(index)
    specs = [os.fspath(s) for s in ([shards] if isinstance(shards, (str, os.PathLike)) else list(shards))]
    if all(not is_remote(s) and os.path.isdir(s) for s in specs):
        docs = []
        for spec in specs:
            candidate = os.path.join(spec, INDEX_NAME)
            if not os.path.isfile(candidate):
                logger.info("no %s in %s: sample counts unknown", INDEX_NAME, spec)
                return None
            docs.append(_with_paths(read_index(candidate), spec))
        return merge_indexes(docs)
    if urls and not any(is_remote(u) for u in urls):
        dirs = {os.path.dirname(os.path.abspath(u)) for u in urls}
        if len(dirs) == 1:
            directory = dirs.pop()
            candidate = os.path.join(directory, INDEX_NAME)
            if os.path.isfile(candidate):
                return _with_paths(read_index(candidate), directory)
    return None


def shard_entries(urls: Sequence[str], index: Mapping[str, Any] | None) -> list[dict[str, Any]] | None:
    """The ``index.json`` entry of every shard (aligned with ``urls``: ``count``, ``sha256`` when the
    writer recorded one), matched by absolute path when the index came from a local directory, else by
    file name; ``None`` when there is no index or a shard is missing from it (logged)."""
    if index is None:
        return None
    by_path = {e["path"]: e for e in index["shards"] if "path" in e}
    by_name = {os.path.basename(str(e["name"])): e for e in index["shards"] if "path" not in e}
    entries: list[dict[str, Any]] = []
    for url in urls:
        local = None if is_remote(url) else os.path.abspath(url)
        name = os.path.basename(url.split("::")[0].rstrip("/"))
        if local is not None and local in by_path:
            entries.append(dict(by_path[local]))
        elif name in by_name:
            entries.append(dict(by_name[name]))
        else:
            logger.warning("shard %s is not listed in index.json; epoch length is unknown", url)
            return None
    return entries


def shard_counts(urls: Sequence[str], index: Mapping[str, Any] | None) -> list[int] | None:
    """Samples per shard (aligned with ``urls``) from the index (see :func:`shard_entries`); ``None`` when
    there is no index or a shard is missing from it (logged)."""
    entries = shard_entries(urls, index)
    return None if entries is None else [int(e["count"]) for e in entries]
