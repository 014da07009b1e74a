"""The WAUVE path of the video task: ROI (scan-area crop) + I3D-R50 clip model without the echocare encoder +
clip-probability averaging, trained and evaluated from the recipe on a few generated mp4s."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors import safe_open

from echocare.config import load_config
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled.readers import ReadContext, read_clip
from echocare.data.labeled.records import Record
from echocare.data.labeled.roi import read_clip_roi
from echocare.jobs.evaluate import evaluate_checkpoint
from echocare.jobs.finetune import run_finetune
from echocare.models.heads import create_head, head_uses_backbone
from echocare.tasks.finetune import load_finetuned

SIZE = 48


def _mp4(path: Path, level: int, frames: int = 8, seed: int = 0) -> None:
    """A scan area (speckle disk of mean ``level``) on black, with a bright 'UI label' in a corner."""
    import av

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:SIZE, 0:SIZE]
    disk = ((y - 28) ** 2 + (x - 24) ** 2) < 16**2
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=10)
        st.width = st.height = SIZE
        st.pix_fmt = "yuv420p"
        for _ in range(frames):
            img = np.zeros((SIZE, SIZE), np.float64)
            img[disk] = np.clip(rng.normal(level, 25, disk.sum()), 20, 255)
            img[1:4, 1:10] = 255  # UI text outside the scan area
            rgb = np.repeat(img.astype(np.uint8)[..., None], 3, axis=2)
            for pkt in st.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


@pytest.fixture(scope="module")
def videos(tmp_path_factory):
    root = tmp_path_factory.mktemp("wauve")
    for i in range(3):
        _mp4(root / "benign" / f"b{i}.mp4", 90, seed=i)
        _mp4(root / "malignant" / f"m{i}.mp4", 200, seed=10 + i)
    (root / "benign" / "short.mp4").parent.mkdir(exist_ok=True)
    _mp4(root / "benign" / "short.mp4", 90, frames=2)
    return root


def test_roi_reader_crops_the_scan_area(videos):
    r = Record("benign/b0.mp4", 0, str(videos), extra={"num_frames": 8, "start": 0})
    ctx = ReadContext(32, clip_len=4)
    whole, roi = read_clip(r, ctx)["image"], read_clip_roi(r, ctx)["image"]
    assert roi.shape == whole.shape == (4, 1, 32, 32)
    assert roi[:, :, :3, :8].max() < 0.5 < whole[:, :, :2, :6].max()  # the UI label is cropped away
    assert roi.mean() > whole.mean()  # the scan area fills the frame


def test_clip_model_option_selects_a_backbone_free_3d_cnn():
    assert head_uses_backbone("video_classification") and not head_uses_backbone("video", clip_model="r3d_18")
    with pytest.raises(ValueError, match="clip_model"):
        create_head("video", None, num_classes=2, clip_model="c3d")


def test_wauve_recipe_trains_and_evaluates_an_i3d_on_roi_clips(videos, tmp_path):
    cfg = load_config(FinetuneConfig, Path("recipes/finetune/video_wauve.yaml"), [
        f"data.root={videos}", "model.img_size=32", "data.clip_len=4", "train.max_steps=2", "train.batch_size=4",
        "train.progress=false", "train.tensorboard=false", "train.precision=fp32", "data.num_workers=0",
        "data.val_fraction=0.34", "optim.warmup_steps=1", "eval.n_bootstrap=20"])
    assert cfg.data.roi == "scan_area" and cfg.model.head["clip_model"] == "i3d_r50"
    summary = run_finetune(cfg, tmp_path / "run")
    m = summary["metrics"]
    assert summary["n_items"] == 4 and m["n_clips"] == 4  # 2 validation videos x 2 clips, scored per video
    assert set(summary["headline"]) == {"accuracy", "macro_f1", "auc"}
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["skipped"]["by_reason"] == {"video-shorter-than-clip": 1}
    with safe_open(str(tmp_path / "run" / "model.safetensors"), framework="pt") as f:
        meta, keys = f.metadata(), list(f.keys())
    assert meta["architecture"] == "none" and not any(k.startswith("backbone.") for k in keys)
    model, _ = load_finetuned(tmp_path / "run" / "model.safetensors")
    assert model.backbone is None and model.head.clip_model == "i3d_r50"
    assert isinstance(model.head.net.net.conv1, torch.nn.Conv3d) and model.head.net.net.conv1.kernel_size[0] == 5
    again = evaluate_checkpoint(tmp_path / "run")
    assert again["metrics"] == m
