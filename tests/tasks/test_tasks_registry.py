"""The task registry: a task defined in this file (brightness regression on generated images) fine-tunes and
evaluates through the public jobs API without any other file knowing its name."""

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from echocare.config import load_config
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled import Record, Scanned, ScanOptions, SkipReport
from echocare.data.labeled.media import load_gray, resize_image
from echocare.data.labeled.readers import ReadContext
from echocare.jobs.evaluate import evaluate_checkpoint
from echocare.jobs.finetune import run_finetune
from echocare.tasks.registry import get_task, list_tasks, register_task, unregister_task
from echocare.tasks.spec import MetricOptions, TaskSpec


# ---------------------------------------------------------------- the toy task: everything it needs
def scan_pngs(root: Path, opts: ScanOptions, skips: SkipReport) -> Scanned:
    """Every PNG under root; the target is the file's mean brightness in [0, 1]."""
    records = [Record(p.name, float(np.asarray(Image.open(p)).mean() / 255), str(root))
               for p in sorted(root.glob("*.png"))]
    return Scanned(root, records, ["brightness"], 1)


def read_brightness(r: Record, ctx: ReadContext) -> dict:
    return {"image": resize_image(load_gray(r.file), ctx.size), "value": torch.tensor([r.target])}


def collect_values(pred, batch, records, out) -> None:
    out.setdefault("pred", []).extend(pred["value"].float().cpu().reshape(-1).tolist())
    out.setdefault("gt", []).extend(float(r.target) for r in records)


def brightness_metrics(pred, class_names, opts: MetricOptions) -> dict:
    return {"abs_error": float(np.mean(np.abs(np.asarray(pred["pred"]) - np.asarray(pred["gt"]))))}


BRIGHTNESS = TaskSpec(
    name="brightness", head="regression", head_args=lambda n, temporal, targets: {"num_outputs": n},
    scan=scan_pngs, read=read_brightness, collect=collect_values, metrics=brightness_metrics,
    headline=("abs_error",), lower_is_better=frozenset({"abs_error"}),
)


@pytest.fixture
def brightness_task():
    register_task(BRIGHTNESS)
    yield BRIGHTNESS
    unregister_task("brightness")


def _images(root: Path, n: int = 12, size: int = 40) -> Path:
    root.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        level = rng.uniform(20, 230)
        Image.fromarray(np.clip(rng.normal(level, 10, (size, size)), 0, 255).astype(np.uint8)).save(root / f"{i}.png")
    return root


def test_toy_task_finetunes_and_evaluates_through_the_registry(brightness_task, tmp_path):
    data = _images(tmp_path / "bright")
    cfg = load_config(FinetuneConfig, None, [
        "task=brightness", f"data.root={data}", "model.name=echocare_swin_debug", "model.img_size=32",
        "model.window_size=4", "train.max_steps=2", "train.batch_size=4", "train.progress=false",
        "train.tensorboard=false", "train.precision=fp32", "data.num_workers=0", "data.val_fraction=0.25",
        "optim.warmup_steps=1"])
    summary = run_finetune(cfg, tmp_path / "run")
    assert summary["task"] == "brightness" and summary["step"] == 2
    assert set(summary["headline"]) == {"abs_error"} and 0.0 <= summary["headline"]["abs_error"] < 1.0
    again = evaluate_checkpoint(tmp_path / "run")
    assert again["metrics"] == summary["metrics"] and again["n_items"] == summary["n_items"] == 3
    every = evaluate_checkpoint(tmp_path / "run", data=str(data))
    assert every["split"] == "all" and every["n_items"] == 12


def test_registry_rejects_duplicates_and_unknown_names(brightness_task):
    assert list_tasks()[:6] == ["classification", "segmentation", "detection", "landmarks", "regression", "video"]
    assert get_task("brightness") is brightness_task and "brightness" in list_tasks()
    with pytest.raises(ValueError, match="already registered"):
        register_task(brightness_task)
    with pytest.raises(ValueError, match="unknown task 'video_classification'.*registered tasks"):
        get_task("video_classification")  # the video task has one name
    assert get_task("landmarks").hflip_safe is False and get_task("regression").better("mae", 1.0, 2.0)
