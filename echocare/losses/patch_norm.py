"""Per-block normalised reconstruction targets (MAE's ``norm_pix_loss``), an option beside eq. (1).

Eq. (1) regresses raw pixels. MAE found that regressing each patch's pixels after subtracting the patch
mean and dividing by its standard deviation gives better representations: the target keeps local
structure (edges, speckle texture) and drops brightness, which a model can guess from context alone.
"""

from __future__ import annotations

import torch

__all__ = ["patch_mean_std"]


def patch_mean_std(images: torch.Tensor, patch_size: int, eps: float = 1e-6) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and standard deviation of every ``patch_size`` x ``patch_size`` block, per channel.

    The normalised target is ``(images - mean) / std``; a constant block (e.g. the black outside of an
    ultrasound fan) becomes 0. As in MAE, the variance is the unbiased one and ``std = sqrt(var + eps)``.

    Args:
        images: (B, C, H, W) with H and W multiples of ``patch_size``.
        patch_size: block side in pixels (>= 2: a 1-pixel block has no variance).
        eps: added to the variance.

    Returns:
        ``(mean, std)``, each (B, C, H, W) float32, constant within every block.

    Raises:
        ValueError: on a 1-pixel block or an image size that is not a multiple of ``patch_size``.
    """
    if patch_size < 2:
        raise ValueError(f"patch_mean_std: patch_size must be >= 2, got {patch_size}")
    if images.ndim != 4:
        raise ValueError(f"patch_mean_std: images must be (B, C, H, W), got {tuple(images.shape)}")
    b, c, h, w = images.shape
    p = patch_size
    if h % p or w % p:
        raise ValueError(f"patch_mean_std: image size {(h, w)} is not a multiple of the block size {p}")
    blocks = images.float().reshape(b, c, h // p, p, w // p, p)  # (B, C, h, p, w, p)
    mean = blocks.mean(dim=(3, 5), keepdim=True)  # (B, C, h, 1, w, 1)
    var = blocks.var(dim=(3, 5), keepdim=True, correction=1)  # unbiased, as MAE
    std = (var + eps).sqrt()
    full = (b, c, h // p, p, w // p, p)
    return mean.expand(full).reshape(b, c, h, w), std.expand(full).reshape(b, c, h, w)
