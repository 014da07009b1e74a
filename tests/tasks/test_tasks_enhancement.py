"""The enhancement task through the public job API: paired data learns over the identity, unpaired data
trains with the GAN, metrics without parameters are null with a reason, PNG grids are written."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from echocare.config import ConfigError, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.jobs.evaluate import evaluate_checkpoint
from echocare.jobs.finetune import run_finetune

SIZE = 32


def _clean(rng: np.random.Generator) -> np.ndarray:
    """A smooth synthetic 'high-quality' image (blobs on a gradient), uint8."""
    y, x = np.mgrid[0:SIZE, 0:SIZE] / SIZE
    img = 0.3 + 0.3 * x
    for _ in range(3):
        cy, cx, r = rng.uniform(0.2, 0.8, 2).tolist() + [rng.uniform(0.1, 0.25)]
        img = img + 0.35 * np.exp(-((y - cy) ** 2 + (x - cx) ** 2) / r**2)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def _degrade(img: np.ndarray) -> np.ndarray:
    """Low quality: darker, lower contrast (what a paired model must undo)."""
    return np.clip(img.astype(float) * 0.5 + 20, 0, 255).astype(np.uint8)


def _dataset(root: Path, n: int, paired: bool) -> Path:
    rng = np.random.default_rng(0)
    for d in ("low", "high"):
        (root / d).mkdir(parents=True)
    for i in range(n):
        hi = _clean(rng)
        Image.fromarray(_degrade(hi)).save(root / "low" / f"{i:02d}.png")
        name = f"{i:02d}.png" if paired else f"h{i:02d}.png"
        Image.fromarray(hi if paired else _clean(rng)).save(root / "high" / name)
    (root / "low" / "notes.txt").write_text("not an image")
    return root


def _cfg(root: Path, *extra: str) -> FinetuneConfig:
    return load_config(FinetuneConfig, Path("recipes/finetune/enhancement.yaml"), [
        f"data.root={root}", "model.init=random", "model.name=echocare_swin_debug", f"model.img_size={SIZE}",
        "model.window_size=4", "model.head={feature_size: 8, disc_channels: 8, disc_layers: 2, norm_name: batch}",
        "train.batch_size=4", "train.progress=false", "train.tensorboard=false", "train.precision=fp32",
        "data.num_workers=0", "optim.warmup_steps=1", "model.layer_decay=1.0", *extra])


def test_paired_enhancement_beats_the_identity_and_evaluate_reproduces(tmp_path):
    root = _dataset(tmp_path / "pairs", 12, paired=True)
    cfg = _cfg(root, "train.max_steps=40", "optim.lr=3e-3", "data.val_fraction=0.34")
    summary = run_finetune(cfg, tmp_path / "run")
    m = summary["metrics"]
    assert m["num_paired"] == summary["n_items"] == 4
    assert m["psnr"] > m["psnr_input"] + 3.0 and m["ssim"] > m["ssim_input"]  # learned, not the identity
    assert m["piqe"] is not None and np.isfinite(m["piqe"])  # parameter-free: always computed
    for name in ("brisque", "fid", "niqe"):  # no SVR / Inception weights; 32-px images have no 96-px NIQE block
        assert m[name] is None and m["unavailable"][name]
    assert "psnr" not in m["unavailable"] and summary["headline"]["psnr"] == m["psnr"]
    report = json.loads((tmp_path / "run" / "data_report.json").read_text())
    assert report["skipped"]["by_reason"] == {"unsupported-suffix": 1}
    grid = Image.open(tmp_path / "run" / "enhanced" / "grid_000.png")
    assert grid.size == (2 * SIZE, 4 * SIZE)  # (input | output) x 4 validation items
    rows = json.loads((tmp_path / "run" / "enhanced" / "grids.json").read_text())["rows"]["grid_000.png"]
    assert len(rows) == 4 and all(r.startswith("low/") for r in rows)
    again = evaluate_checkpoint(tmp_path / "run", out=tmp_path / "eval" / "m.json")
    assert again["metrics"]["psnr"] == pytest.approx(m["psnr"]) and again["metrics"]["piqe"] == pytest.approx(m["piqe"])
    assert (tmp_path / "eval" / "m_outputs" / "enhanced" / "grid_000.png").is_file()


def test_unpaired_enhancement_trains_with_the_gan_and_reports_null_psnr(tmp_path):
    root = _dataset(tmp_path / "unpaired", 8, paired=False)
    cfg = _cfg(root, "train.max_steps=2", "data.val_fraction=0.25", "eval.save_images=0")
    summary = run_finetune(cfg, tmp_path / "run")
    m = summary["metrics"]
    assert m["num_paired"] == 0 and m["psnr"] is None and m["unavailable"]["psnr"] == "no paired references"
    assert set(summary["headline"]) == {"piqe"}  # null metrics are not headline numbers
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert any("d_loss" in x and "g_adv" in x and "structure" in x for x in lines)  # EnlightenGAN-style terms
    assert not (tmp_path / "run" / "enhanced").exists()
    every = evaluate_checkpoint(tmp_path / "run", data=str(root))
    assert every["split"] == "all" and every["n_items"] == 8 and every["metrics"]["num_reference"] >= 2
    with pytest.raises(ConfigError, match="select_metric='psnr' is null here .no paired references"):
        run_finetune(_cfg(root, "train.max_steps=1", "train.eval_every=1", "data.val_fraction=0.25"), tmp_path / "r2")


def test_protocol_runs_enhancement_fractions(tmp_path):
    from echocare.jobs.protocol import run_protocol

    root = _dataset(tmp_path / "pairs", 8, paired=True)
    res = run_protocol(_cfg(root, "train.max_steps=1", "data.val_fraction=0.25", "eval.save_images=0"),
                       tmp_path / "proto", fractions=[0.5, 1.0], seeds=[0])
    assert set(res["results"]) == {0.5, 1.0} and {"psnr", "ssim", "piqe"} <= set(res["results"][1.0])
    assert (tmp_path / "proto" / "protocol.md").is_file()


def test_missing_optional_extra_is_one_clear_error(tmp_path):
    from echocare.tasks.spec import MissingDependencyError, require_modules

    with pytest.raises(MissingDependencyError, match=r"needs no_such_module_xyz: pip install 'echocare\[enh"):
        require_modules("enhancement", ("torch", "no_such_module_xyz"), "enhancement")
    assert issubclass(MissingDependencyError, ValueError)  # the CLI turns ValueErrors into one line, exit 2
