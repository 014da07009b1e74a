"""bench/recipe_speed.py: real (tiny) trainings per configuration, the recipe's setting as the reference row."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture()
def recipe_speed(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "bench"))  # as when run as a script (it imports contention, machine)
    return importlib.import_module("recipe_speed")


def test_recipe_budget_is_the_resolved_recipe(recipe_speed):
    from echocare.config import PretrainConfig, load_config

    small = REPO / "recipes" / "pretrain" / "small.yaml"
    cfg = load_config(PretrainConfig, small, ["data.shards=x"])
    assert recipe_speed.recipe_budget(small, ["data.shards=x"]) == (
        cfg.data.num_workers, cfg.train.batch_size, cfg.train.max_steps)
    assert recipe_speed.recipe_budget(small, ["data.shards=x", "train.batch_size=8"])[1] == 8


def test_every_configuration_trains_and_the_recipe_row_is_the_reference(recipe_speed, tmp_path):
    out = tmp_path / "speed.md"
    # debug recipe: num_workers 0, batch 16, 60 steps; ask for 1 worker only: the recipe's row is added first
    assert recipe_speed.main(["--recipe", str(REPO / "recipes/pretrain/debug.yaml"), "--workers", "1",
                              "--steps", "4", "--log-every", "2", "--n-images", "24", "--set", "train.batch_size=4",
                              "--out", str(out)]) == 0
    rows = [ln.split("|")[1:-1] for ln in out.read_text().splitlines() if ln.startswith("| ") and "---" not in ln]
    body = [[c.strip() for c in r] for r in rows[1:]]
    assert [(r[0], r[1]) for r in body] == [("0 (recipe)", "4"), ("1", "4")]
    assert body[0][3] == "1.00x"
    for r in body:
        speed = float(r[2])
        assert speed > 0
        assert float(r[4]) == pytest.approx(60 * 4 / speed / 60, abs=0.06)  # the recipe's 60 x 4 images


@pytest.mark.parametrize("argv, message", [(["--workers", "0,x"], "--workers: expected a comma list of integers"),
                                           (["--batches", "0"], "--batches: out of range"),
                                           (["--shards", "/nonexistent/shards"], "--shards: no such path")])
def test_bad_options_are_one_line_errors(recipe_speed, capsys, argv, message):
    with pytest.raises(SystemExit) as exc:
        recipe_speed.parse_args(argv)
    assert exc.value.code == 2 and message in capsys.readouterr().err
