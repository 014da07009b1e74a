"""Image enhancement metrics (seed 003 §4.3, "Enhancement"): NIQE, BRISQUE, PIQE, FID, PSNR, SSIM.

Implementations come from maintained libraries: pyiqa (NIQE, BRISQUE, PIQE — MATLAB-faithful
ports), torchmetrics (PSNR, SSIM, the Fréchet distance of FID) and torchvision + pyiqa's FID
Inception blocks (the TF-FID Inception-v3 used by pytorch-fid). Nothing is downloaded:

* **PIQE** needs no parameters and is always computed.
* **NIQE** needs a pristine-image multivariate Gaussian (``mu_prisparam``, ``cov_prisparam``):
  from a ``.mat`` file (pyiqa/MATLAB ``niqe_modelparameters.mat``) or, as in the report's
  definition ("the high-quality (reference-domain) image's MVG model"), fitted here on the
  high-quality reference images with pyiqa's NIQE features (all 96-px blocks, no sharpness
  selection). The report says which one was used.
* **BRISQUE** needs the LIVE-trained SVR (``brisque_svm_weights.pt``, a tuple of tensors, loaded
  with ``weights_only=True``; or MATLAB's ``brisque_matlab.mat``).
* **FID** needs the FID Inception-v3 weights (pytorch-fid's ``pt_inception-2015-12-05-*.pth``).

Without what a metric needs, its value is ``None`` and ``unavailable[name]`` says why — never a
fake number. Images are (N, 1, H, W) float tensors in [0, 1].
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

logger = logging.getLogger(__name__)

__all__ = [
    "NiqeParams", "brisque_scores", "build_fid_inception", "enhancement_report", "fid", "fit_niqe_params",
    "load_niqe_params", "niqe_scores", "piqe_scores", "psnr", "ssim",
]

_CHUNK = 16  # images per metric forward pass


def _check_images(x: torch.Tensor, name: str) -> torch.Tensor:
    if not isinstance(x, torch.Tensor) or x.ndim != 4 or x.shape[1] != 1:
        raise ValueError(f"{name} should be a (N, 1, H, W) tensor in [0, 1], got "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    return x.detach().float().cpu().clamp(0.0, 1.0)


def _chunks(x: torch.Tensor):
    for i in range(0, x.shape[0], _CHUNK):
        yield x[i : i + _CHUNK]


def psnr(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of per-image PSNR (dB, data range 1)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    pred, target = _check_images(pred, "pred"), _check_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    per = peak_signal_noise_ratio(pred, target, data_range=1.0, reduction="none", dim=(1, 2, 3))  # (N,)
    return float(per.mean())


def ssim(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Mean over images of per-image SSIM (Gaussian window 11, sigma 1.5, data range 1)."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    pred, target = _check_images(pred, "pred"), _check_images(target, "target")
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    per = structural_similarity_index_measure(pred, target, data_range=1.0, reduction="none")  # (N,)
    return float(per.mean())


def piqe_scores(images: torch.Tensor) -> torch.Tensor:
    """PIQE per image (N,), lower is better (pyiqa ``piqe``, 16-px blocks)."""
    from pyiqa.archs.piqe_arch import piqe

    images = _check_images(images, "images")
    return torch.cat([piqe(c)[0].reshape(-1) for c in _chunks(images)])


# ---------------------------------------------------------------------------------------- NIQE
@dataclass
class NiqeParams:
    """Pristine multivariate Gaussian of NIQE features: ``mu`` (36,), ``cov`` (36, 36), ``source``."""

    mu: torch.Tensor
    cov: torch.Tensor
    source: str


def load_niqe_params(path: str | Path) -> NiqeParams:
    """Read ``mu_prisparam`` / ``cov_prisparam`` from a MATLAB ``.mat`` file (scipy, no pickle)."""
    import scipy.io

    mat = scipy.io.loadmat(str(path))
    if "mu_prisparam" not in mat or "cov_prisparam" not in mat:
        raise ValueError(f"{path}: not a NIQE model file (needs mu_prisparam and cov_prisparam)")
    return NiqeParams(torch.from_numpy(np.ravel(mat["mu_prisparam"])).double(),
                      torch.from_numpy(np.asarray(mat["cov_prisparam"])).double(), f"file:{path}")


def _niqe_block_features(images: torch.Tensor) -> torch.Tensor:
    """pyiqa's NIQE features of every 96-px block at two scales: (N, blocks, 36), float64, 0-255 scale."""
    from pyiqa.archs.func_util import normalize_img_with_gauss
    from pyiqa.archs.niqe_arch import compute_feature
    from pyiqa.matlab_utils import blockproc, imresize

    img = (images.double() * 255.0).round()
    h, w = img.shape[-2:]
    nh, nw = h // 96, w // 96
    if nh * nw == 0:
        raise ValueError(f"NIQE needs images of at least 96x96 pixels, got {h}x{w}")
    img = img[..., : nh * 96, : nw * 96]
    feats = []
    for scale in (1, 2):  # same two scales and block sizes as pyiqa.archs.niqe_arch.niqe
        norm = normalize_img_with_gauss(img, padding="replicate")
        feats.append(blockproc(norm, [96 // scale, 96 // scale], fun=compute_feature))
        if scale == 1:
            img = imresize(img / 255.0, scale=0.5, antialiasing=True) * 255.0
    return torch.cat(feats, dim=-1)


def fit_niqe_params(reference: torch.Tensor) -> NiqeParams:
    """Fit NIQE's "pristine" MVG on high-quality reference images (the report's definition).

    Raises:
        ValueError: images smaller than 96 px, or fewer than 2 finite blocks overall.
    """
    reference = _check_images(reference, "reference")
    feats = torch.cat([_niqe_block_features(c) for c in _chunks(reference)]).reshape(-1, 36)  # (blocks, 36)
    feats = feats[torch.isfinite(feats).all(dim=1)]
    if feats.shape[0] < 2:
        raise ValueError(f"fitting NIQE needs at least 2 finite 96-px blocks, got {feats.shape[0]}")
    return NiqeParams(feats.mean(dim=0), torch.cov(feats.T),
                      f"fitted:{reference.shape[0]} reference images, {feats.shape[0]} blocks")


def niqe_scores(images: torch.Tensor, params: NiqeParams) -> torch.Tensor:
    """NIQE per image (N,), lower is better (pyiqa ``calculate_niqe`` with the given MVG).

    Images need at least two 96-px blocks (e.g. 192x96); a NaN marks an image with too few.
    """
    from pyiqa.archs.niqe_arch import calculate_niqe

    images = _check_images(images, "images")
    out = [calculate_niqe(c, mu_pris_param=params.mu, cov_pris_param=params.cov).reshape(-1)
           for c in _chunks(images)]
    return torch.cat(out).float()


# ------------------------------------------------------------------------------------- BRISQUE
def brisque_scores(images: torch.Tensor, weights: str | Path) -> torch.Tensor:
    """BRISQUE per image (N,), lower is better (pyiqa ``brisque``).

    Args:
        images: (N, 1, H, W) in [0, 1].
        weights: ``brisque_svm_weights.pt``/``.pth`` (tuple ``(sv_coef, sv)``, loaded with
            ``weights_only=True``) or MATLAB ``brisque_matlab.mat`` (``sv``, ``sv_coef``).
    """
    from pyiqa.archs.brisque_arch import brisque

    images = _check_images(images, "images")
    path = Path(weights)
    if path.suffix.lower() == ".mat":
        import scipy.io

        mat = scipy.io.loadmat(str(path))
        sv_coef, sv = torch.from_numpy(np.ravel(mat["sv_coef"])), torch.from_numpy(mat["sv"])
        kw = dict(gamma=1.0, rho=-43.4582, scale=0.3210, version="matlab")
    else:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
        if not (isinstance(loaded, (tuple, list)) and len(loaded) == 2):
            raise ValueError(f"{path}: expected a (sv_coef, sv) tuple of tensors")
        sv_coef, sv = loaded
        kw = dict(gamma=0.05, rho=-153.591, scale=1.0, version="original")
    sv = sv / kw["scale"]  # as pyiqa's BRISQUE module does
    out = [brisque(c, sv_coef=sv_coef.to(c), sv=sv.to(c), **kw).reshape(-1) for c in _chunks(images)]
    return torch.cat(out).float()


# ----------------------------------------------------------------------------------------- FID
class _FidFeatures(nn.Module):
    """TF-FID Inception-v3 pool3 features (2048) of (N, 1, H, W) [0, 1] images (gray → RGB, 299 px)."""

    num_features = 2048

    def __init__(self, inception: nn.Module) -> None:
        super().__init__()
        self.net = inception

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = self.net
        x = F.interpolate(x.float().expand(-1, 3, -1, -1), size=(299, 299), mode="bilinear", align_corners=False)
        x = 2.0 * x - 1.0  # (N, 3, 299, 299) in [-1, 1], as pytorch-fid
        x = n.maxpool1(n.Conv2d_2b_3x3(n.Conv2d_2a_3x3(n.Conv2d_1a_3x3(x))))
        x = n.maxpool2(n.Conv2d_4a_3x3(n.Conv2d_3b_1x1(x)))
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b", "Mixed_6c", "Mixed_6d",
                     "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c"):
            x = getattr(n, name)(x)
        return x.mean(dim=(2, 3))  # (N, 2048)


def build_fid_inception(weights: str | Path | None) -> nn.Module:
    """The FID Inception-v3 feature extractor; ``weights=None`` leaves it randomly initialised (tests only)."""
    import torchvision
    from pyiqa.archs.inception import FIDInceptionA, FIDInceptionC, FIDInceptionE_1, FIDInceptionE_2

    net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    net.Mixed_5b, net.Mixed_5c, net.Mixed_5d = FIDInceptionA(192, 32), FIDInceptionA(256, 64), FIDInceptionA(288, 64)
    net.Mixed_6b, net.Mixed_6c = FIDInceptionC(768, 128), FIDInceptionC(768, 160)
    net.Mixed_6d, net.Mixed_6e = FIDInceptionC(768, 160), FIDInceptionC(768, 192)
    net.Mixed_7b, net.Mixed_7c = FIDInceptionE_1(1280), FIDInceptionE_2(2048)
    if weights is not None:
        net.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True), strict=True)
    return _FidFeatures(net.eval().requires_grad_(False))


def fid(real: torch.Tensor, fake: torch.Tensor, inception: nn.Module) -> float:
    """Fréchet distance between Inception features of ``real`` and ``fake`` (torchmetrics FID).

    Args:
        real: (N, 1, H, W) reference high-quality images, N >= 2.
        fake: (M, 1, H, W) enhanced images, M >= 2.
        inception: from :func:`build_fid_inception`.
    """
    from torchmetrics.image.fid import FrechetInceptionDistance

    real, fake = _check_images(real, "real"), _check_images(fake, "fake")
    if real.shape[0] < 2 or fake.shape[0] < 2:
        raise ValueError(f"FID needs at least 2 images per set, got {real.shape[0]} real and {fake.shape[0]} fake")
    metric = FrechetInceptionDistance(feature=inception, normalize=True)
    for c in _chunks(real):
        metric.update(c, real=True)
    for c in _chunks(fake):
        metric.update(c, real=False)
    return float(metric.compute())


# -------------------------------------------------------------------------------------- report
def _mean(scores: torch.Tensor, name: str, unavailable: dict[str, str]) -> float | None:
    finite = scores[torch.isfinite(scores)]
    if finite.numel() < scores.numel():
        unavailable[f"{name}_nonfinite"] = f"{scores.numel() - finite.numel()} of {scores.numel()} images gave NaN"
    return float(finite.mean()) if finite.numel() else None


def enhancement_report(
    enhanced: torch.Tensor,
    reference: torch.Tensor | None = None,
    paired_targets: torch.Tensor | None = None,
    inputs: torch.Tensor | None = None,
    niqe_params: str | Path | NiqeParams | None = None,
    brisque_weights: str | Path | None = None,
    inception_weights: str | Path | None = None,
) -> dict[str, Any]:
    """All enhancement metrics; a metric that cannot be computed is ``None`` with its reason.

    Args:
        enhanced: (N, 1, H, W) enhanced images.
        reference: (M, 1, H', W') high-quality images (FID real set; NIQE fit when no params file).
        paired_targets: (N, 1, H, W) references of ``enhanced`` (PSNR/SSIM), if paired.
        inputs: (N, 1, H, W) low-quality inputs; with ``paired_targets`` adds ``psnr_input`` /
            ``ssim_input`` (the identity baseline).
        niqe_params: ``.mat`` path or :class:`NiqeParams`; None = fit on ``reference``.
        brisque_weights: BRISQUE SVR file, see :func:`brisque_scores`.
        inception_weights: FID Inception-v3 state dict file.

    Returns:
        ``{"niqe", "brisque", "piqe", "fid", "psnr", "ssim", ["psnr_input", "ssim_input"],
        "niqe_model", "num_images", "unavailable": {metric: reason}}``.
    """
    enhanced = _check_images(enhanced, "enhanced")
    out: dict[str, Any] = {"num_images": int(enhanced.shape[0])}
    why: dict[str, str] = {}
    out["piqe"] = _mean(piqe_scores(enhanced), "piqe", why)
    params: NiqeParams | None = None
    if isinstance(niqe_params, NiqeParams):
        params = niqe_params
    elif niqe_params is not None:
        params = load_niqe_params(niqe_params)
    elif reference is not None:
        try:
            params = fit_niqe_params(reference)
        except ValueError as err:
            why["niqe"] = f"could not fit the reference MVG: {err}"
    else:
        why["niqe"] = "no NIQE model file (niqe_params) and no reference images to fit one on"
    out["niqe_model"] = params.source if params else None
    out["niqe"] = None
    if params is not None:
        if min(enhanced.shape[-2:]) < 96 or max(enhanced.shape[-2:]) < 192:
            why["niqe"] = f"images of {tuple(enhanced.shape[-2:])} px have fewer than two 96-px NIQE blocks"
        else:
            out["niqe"] = _mean(niqe_scores(enhanced, params), "niqe", why)
    if brisque_weights is not None:
        out["brisque"] = _mean(brisque_scores(enhanced, brisque_weights), "brisque", why)
    else:
        out["brisque"] = None
        why["brisque"] = "needs the LIVE-trained SVR (brisque_weights=brisque_svm_weights.pt); none given"
    out["fid"] = None
    if inception_weights is None:
        why["fid"] = "needs FID Inception-v3 weights (inception_weights=pt_inception-2015-12-05-*.pth); none given"
    elif reference is None or reference.shape[0] < 2 or enhanced.shape[0] < 2:
        why["fid"] = "needs at least 2 reference and 2 enhanced images"
    else:
        out["fid"] = fid(reference, enhanced, build_fid_inception(inception_weights))
    if paired_targets is not None:
        out["psnr"], out["ssim"] = psnr(enhanced, paired_targets), ssim(enhanced, paired_targets)
        if inputs is not None:
            out["psnr_input"], out["ssim_input"] = psnr(inputs, paired_targets), ssim(inputs, paired_targets)
    else:
        out["psnr"] = out["ssim"] = None
        why["psnr"] = why["ssim"] = "no paired references"
    out["unavailable"] = why
    for k, v in why.items():
        logger.info("enhancement metric %s unavailable: %s", k, v)
    return out
