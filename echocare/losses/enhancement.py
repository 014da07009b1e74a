"""Losses for image enhancement: least-squares GAN terms, SSIM and the paired L1 + SSIM loss.

The unpaired objective is EnlightenGAN-style (one generator low → high, no cycle): the generator
is pushed towards the high-quality domain by an LSGAN discriminator and kept on the input's
anatomy by a structure term (1 - SSIM between output and input). Paired data (low and high
images with the same name) adds L1 + (1 - SSIM) to the reference. SSIM is MONAI's
(Gaussian window), so the loss and the reported SSIM agree in definition.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import SSIMLoss


def lsgan_loss(scores: torch.Tensor, real: bool) -> torch.Tensor:
    """Least-squares GAN loss (Mao et al. 2017): mean of (D(x) - 1)^2 for real, D(x)^2 for fake.

    Args:
        scores: discriminator outputs of any shape (PatchGAN: (B, 1, h, w)).
        real: whether the target label is "real".

    Returns:
        Scalar loss.
    """
    target = torch.ones_like(scores) if real else torch.zeros_like(scores)
    return F.mse_loss(scores.float(), target.float())


def ssim_loss(pred: torch.Tensor, target: torch.Tensor, win_size: int = 7) -> torch.Tensor:
    """1 - SSIM (MONAI, Gaussian window, data range 1), per image, shape (B,).

    Args:
        pred: (B, 1, H, W) images in about [0, 1].
        target: (B, 1, H, W) images in [0, 1].
        win_size: Gaussian window side (odd, <= min(H, W)).

    Raises:
        ValueError: shapes differ, or the images are smaller than the window.
    """
    if pred.shape != target.shape or pred.ndim != 4:
        raise ValueError(f"pred and target should both be (B, C, H, W); got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    if min(pred.shape[-2:]) < win_size:
        raise ValueError(f"images of {tuple(pred.shape[-2:])} are smaller than the SSIM window {win_size}")
    loss = SSIMLoss(spatial_dims=2, data_range=1.0, win_size=win_size, reduction="none")
    return loss(pred.float(), target.float()).reshape(pred.shape[0], -1).mean(dim=1)  # (B,)


def paired_enhancement_loss(
    pred: torch.Tensor, target: torch.Tensor, l1_weight: float = 1.0, ssim_weight: float = 1.0
) -> dict[str, torch.Tensor]:
    """L1 + (1 - SSIM) between enhanced images and their high-quality references.

    Args:
        pred: (B, 1, H, W) enhanced images.
        target: (B, 1, H, W) references in [0, 1].
        l1_weight: weight of the L1 term.
        ssim_weight: weight of the 1 - SSIM term.

    Returns:
        {"loss", "l1", "ssim_loss"} scalars (means over the batch).
    """
    l1 = (pred.float() - target.float()).abs().mean()
    s = ssim_loss(pred, target).mean()
    return {"loss": l1_weight * l1 + ssim_weight * s, "l1": l1, "ssim_loss": s}
