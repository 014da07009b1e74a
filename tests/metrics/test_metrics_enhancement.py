"""Enhancement metrics from pyiqa / torchmetrics: offline code paths, and None-with-reason without parameters."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.io
import torch
from scipy import ndimage

from echocare.data.phantom import phantom_image
from echocare.metrics import enhancement as em


@pytest.fixture(scope="module")
def images() -> tuple[torch.Tensor, torch.Tensor]:
    """(high, low): 192 px phantoms and blurred + noisy copies."""
    rng = np.random.default_rng(0)
    high = np.stack([phantom_image(rng, 192, k)[0] for k in ["liver", "thyroid", "kidney", "breast"]]) / 255.0
    low = np.clip(np.stack([ndimage.gaussian_filter(h, 2.0) for h in high]) + rng.normal(0, 0.1, high.shape), 0, 1)
    return torch.tensor(high, dtype=torch.float32)[:, None], torch.tensor(low, dtype=torch.float32)[:, None]


def test_paired_psnr_ssim(images):
    high, low = images
    assert em.psnr(high, high) > 80 and em.ssim(high, high) == pytest.approx(1.0, abs=1e-4)
    mse = float(((low - high) ** 2).mean(dim=(1, 2, 3)).log10().mean())
    assert em.psnr(low, high) == pytest.approx(-10 * mse, rel=1e-4)
    assert em.ssim(low, high) < 0.9
    with pytest.raises(ValueError, match="differ in shape"):
        em.psnr(low, high[:2])


def test_piqe_niqe_rank_degraded_images_worse(images, tmp_path):
    high, low = images
    assert float(em.piqe_scores(low).mean()) > float(em.piqe_scores(high).mean())
    params = em.fit_niqe_params(high)
    assert params.mu.shape == (36,) and params.cov.shape == (36, 36) and params.source.startswith("fitted:4")
    assert float(em.niqe_scores(low, params).mean()) > float(em.niqe_scores(high, params).mean())
    # the same MVG read back from a MATLAB-style file gives the same scores
    scipy.io.savemat(tmp_path / "niqe.mat", {"mu_prisparam": params.mu.numpy()[None],
                                              "cov_prisparam": params.cov.numpy()})
    loaded = em.load_niqe_params(tmp_path / "niqe.mat")
    assert torch.allclose(em.niqe_scores(low, loaded), em.niqe_scores(low, params), rtol=1e-4)
    with pytest.raises(ValueError, match="at least 96x96"):
        em.fit_niqe_params(torch.rand(2, 1, 64, 64))


def test_brisque_and_fid_load_local_files_without_unpickling(images, tmp_path):
    high, low = images
    g = torch.Generator().manual_seed(0)
    torch.save((torch.randn(20, generator=g), torch.rand(20, 36, generator=g)), tmp_path / "svm.pt")
    scores = em.brisque_scores(low, tmp_path / "svm.pt")
    assert scores.shape == (4,) and torch.isfinite(scores).all()
    torch.save({"sv": torch.rand(3, 36)}, tmp_path / "bad.pt")
    with pytest.raises(ValueError, match="sv_coef, sv"):
        em.brisque_scores(low, tmp_path / "bad.pt")
    # FID path: a (random) Inception state dict saved and loaded strictly with weights_only=True
    torch.manual_seed(0)
    torch.save(em.build_fid_inception(None).net.state_dict(), tmp_path / "inception.pth")
    inception = em.build_fid_inception(tmp_path / "inception.pth")
    value = em.fid(high[:2], high[:2], inception)
    assert np.isfinite(value) and abs(value) < 1e-6
    torch.save({"fc.weight": torch.zeros(1)}, tmp_path / "wrong.pth")
    with pytest.raises(RuntimeError):
        em.build_fid_inception(tmp_path / "wrong.pth")


def test_report_says_why_a_metric_is_missing(images):
    high, low = images
    rep = em.enhancement_report(low, paired_targets=high, inputs=low)
    assert rep["piqe"] is not None and rep["psnr"] == pytest.approx(rep["psnr_input"])
    assert rep["niqe"] is None and rep["brisque"] is None and rep["fid"] is None
    assert {"niqe", "brisque", "fid"} <= set(rep["unavailable"]) and "psnr" not in rep["unavailable"]
    rep2 = em.enhancement_report(low, reference=high)
    assert rep2["niqe"] is not None and rep2["niqe_model"].startswith("fitted:")
    assert rep2["psnr"] is None and "no paired references" in rep2["unavailable"]["psnr"]
    assert rep2["fid"] is None and "Inception" in rep2["unavailable"]["fid"]
    small = em.enhancement_report(torch.rand(2, 1, 64, 64), reference=high)
    assert small["niqe"] is None and "96-px" in small["unavailable"]["niqe"]
