"""bench/finetune_speed.py: real (tiny) fine-tunes per worker count on HC18 images, 0 workers as the reference."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[2]
HC18 = REPO.parent / "shared" / "data" / "hc18_256"


@pytest.fixture()
def finetune_speed(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run as a script (it imports contention, machine)
    return importlib.import_module("finetune_speed")


@pytest.mark.skipif(not (HC18 / "labels.csv").is_file(), reason="HC18 data not present at ../shared/data/hc18_256")
def test_each_worker_count_fine_tunes_and_zero_workers_is_the_reference(finetune_speed, tmp_path):
    root = finetune_speed.write_set(HC18, tmp_path / "set", 20)
    masks = sorted((root / "masks").iterdir())
    assert len(masks) == 20 and set(np.unique(np.asarray(Image.open(masks[0])))) <= {0, 1}
    out = tmp_path / "speed.md"
    assert finetune_speed.main(["--workers", "0,2", "--n-images", "20", "--steps", "6", "--log-every", "2",
                                "--set", "model.name=echocare_swin_debug", "--set", "model.img_size=64",
                                "--set", "train.batch_size=4", "--set", 'model.head={"feature_size": 8}',
                                "--out", str(out)]) == 0
    rows = [ln.split("|")[1:-1] for ln in out.read_text().splitlines() if ln.startswith("| ") and "---" not in ln]
    body = [[c.strip() for c in r] for r in rows[1:]]
    assert [(r[0], r[1]) for r in body] == [("20", "0"), ("20", "2")]
    assert body[0][3] == "1.00x" and all(float(r[2]) > 0 for r in body)


@pytest.mark.parametrize("argv, message", [(["--workers", "0,x"], "--workers: expected a comma list of integers"),
                                           (["--n-images", "5"], "--n-images: values must be >= 20"),
                                           (["--data", "/nonexistent"], "--data: no labels.csv")])
def test_bad_options_are_one_line_errors(finetune_speed, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        finetune_speed.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
