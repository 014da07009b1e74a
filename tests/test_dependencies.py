"""pyproject's runtime dependencies tell the truth: each one is imported, and the timm pin holds."""

from __future__ import annotations

import ast
import re
from importlib import metadata
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# distribution name -> the module echocare imports it as
MODULE = {"pyyaml": "yaml", "pillow": "PIL", "tensorboard": "torch.utils.tensorboard"}


def _dependencies() -> list[str]:
    tomllib = pytest.importorskip("tomllib")  # Python >= 3.11
    return tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]


def _imported_modules() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "echocare").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names.add(node.module)
    return names


def test_every_runtime_dependency_is_imported() -> None:
    imported = _imported_modules()
    unused = []
    for req in _dependencies():
        dist = re.split(r"[<>=!~\[; ]", req, maxsplit=1)[0].lower()
        module = MODULE.get(dist, dist.replace("-", "_"))
        if not any(name == module or name.startswith(module + ".") for name in imported):
            unused.append(dist)
    assert not unused, f"declared in pyproject but never imported by echocare: {unused}"


def test_installed_timm_meets_the_pin() -> None:
    (req,) = [r for r in _dependencies() if r.startswith("timm")]
    lowest = tuple(int(p) for p in re.search(r">=([0-9.]+)", req).group(1).split("."))
    installed = tuple(int(p) for p in re.findall(r"\d+", metadata.version("timm"))[:3])
    assert installed >= lowest, f"timm {installed} is older than the declared minimum {lowest}"
