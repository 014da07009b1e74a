"""Coverage gaps: ontology anatomies with few or no public datasets in the catalogue.

Seed 001 notes that fetal (5 datasets) and prostate (4) content is scarce for how widely ultrasound is
used there. :func:`coverage` counts, for every ontology node, the catalogue datasets whose anatomy lies
at or below it; :func:`gaps` keeps the nodes of one level with at most ``few`` datasets.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from echocare.catalog.catalog import Catalog

logger = logging.getLogger(__name__)


def coverage(catalog: Catalog, onto: Any) -> dict[str, list[str]]:
    """Node id -> ids of the datasets with an anatomy at or below that node (every node, maybe empty)."""
    out: dict[str, list[str]] = {n: [] for n in onto.names}
    for e in catalog:
        nodes: set[str] = set()
        for a in e.anatomy:
            i = onto.index(a)
            nodes.update(onto.names[j] for j in [i, *onto.ancestors(i)])
        for n in nodes:
            out[n].append(e.id)
    return out


def gaps(catalog: Catalog, onto: Any, level: int = 1, few: int = 2) -> list[dict[str, Any]]:
    """Nodes of ``level`` (0 part, 1 organ, 2 structure) with at most ``few`` datasets, fewest first.

    Returns:
        rows ``{"node", "name", "level", "datasets": count, "ids": [...]}``.
    """
    cov = coverage(catalog, onto)
    rows = [{"node": n, "name": onto.display_names[i], "level": onto.levels[i], "datasets": len(cov[n]), "ids": sorted(cov[n])}
            for i, n in enumerate(onto.names) if onto.levels[i] == level and len(cov[n]) <= few]
    return sorted(rows, key=lambda r: (r["datasets"], r["node"]))


def format_gaps(rows: list[dict[str, Any]]) -> str:
    """A plain-text table of :func:`gaps` rows."""
    if not rows:
        return "no gaps at this threshold"
    w = max(len(r["node"]) for r in rows)
    lines = [f"{'anatomy':<{w}}  datasets  ids", f"{'-' * w}  --------  ---"]
    lines += [f"{r['node']:<{w}}  {r['datasets']:>8}  {', '.join(r['ids']) or '-'}" for r in rows]
    return "\n".join(lines)


def plot_coverage(catalog: Catalog, onto: Any, out: str | Path, level: int = 1, few: int = 2) -> Path:
    """Bar plot (PNG) of datasets per node of ``level``, gaps (<= ``few``) in red; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cov = coverage(catalog, onto)
    nodes = sorted((n for i, n in enumerate(onto.names) if onto.levels[i] == level), key=lambda n: (len(cov[n]), n))
    counts = [len(cov[n]) for n in nodes]
    fig, ax = plt.subplots(figsize=(7, max(3.0, 0.22 * len(nodes) + 1)))
    ax.barh(range(len(nodes)), counts, color=["tab:red" if c <= few else "tab:blue" for c in counts])
    ax.set_yticks(range(len(nodes)), nodes, fontsize=7)
    ax.set_xlabel("public datasets in the catalogue")
    ax.set_title(f"EchoAtlas catalogue coverage (red: <= {few} datasets)")
    fig.tight_layout()
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=120)
    plt.close(fig)
    logger.info("wrote %s", out)
    return out
