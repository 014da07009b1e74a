"""CLI smoke tests: ``echocare shards build|inspect|phantom`` through ``echocare.cli.main``."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from PIL import Image

from echocare.cli import main


def test_phantom_then_inspect(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "ph"
    assert main(["shards", "phantom", "--n", "14", "--out", str(out), "--size", "64", "--seed", "2"]) == 0
    assert "14 phantom images" in capsys.readouterr().out
    assert json.loads((out / "index.json").read_text())["total"] == 14
    assert main(["shards", "inspect", str(out), "--verify"]) == 0
    text = capsys.readouterr().out
    assert "samples: 14" in text and "thorax/heart/a4c" in text
    grid = Image.open(out / "inspect" / "phantom.png")
    assert grid.mode == "L" and grid.width >= 4 * 64
    (out / "shard-000000.tar").write_bytes(b"corrupted")
    assert main(["shards", "inspect", str(out), "--verify", "--out", str(tmp_path / "g")]) == 1
    text = capsys.readouterr().out
    assert "CHECKSUM MISMATCH: shard-000000.tar" in text and "UNREADABLE shard-000000.tar" in text


def test_build_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    root = tmp_path / "imgs"
    root.mkdir()
    for i in range(3):
        Image.effect_noise((80, 60), 40 + 10 * i).save(root / f"img{i}.png")
    (root / "bad.png").write_text("nope")
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump({"image_size": 32, "datasets": [
        {"name": "pocus_frames", "root": "imgs", "kind": "images", "include": ["**/*.png"], "label": "thorax/lung"}]}))
    out = tmp_path / "out"
    assert main(["shards", "build", "--manifest", str(manifest), "--out", str(out), "--workers", "1"]) == 0
    assert "3 samples in 1 shard(s)" in capsys.readouterr().out
    assert main(["shards", "inspect", str(out), "--per-dataset", "2"]) == 0
    assert "not-an-image" in capsys.readouterr().out
    manifest.write_text(yaml.safe_dump({"datasets": [{"name": "x", "root": "imgs", "colour": 1}]}))
    assert main(["shards", "build", "--manifest", str(manifest), "--out", str(out)]) == 2
    assert "datasets[0].colour: unknown key" in capsys.readouterr().err


def test_inspect_missing_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["shards", "inspect", str(tmp_path)]) == 2
    assert "no shard" in capsys.readouterr().err
