"""Random affine augmentation of labeled items: rotation, zoom and shift, applied to the image and its mask.

One draw per item: ``theta`` maps output coordinates to input coordinates (``F.affine_grid`` convention,
normalised to [-1, 1]), so a zoom ``s > 1`` samples the input at ``coords / s`` and the content grows. The
image (``(C, H, W)``, or ``(T, C, H, W)`` for clips: every frame gets the same draw) is resampled bilinearly, a
segmentation mask (``(H, W)`` class ids) by nearest neighbour; pixels that come from outside the frame are 0
(background) in both.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["affine_theta", "apply_affine"]


def affine_theta(rng: np.random.Generator, rotate: float, scale: tuple[float, float], translate: float) -> torch.Tensor:
    """Draw one affine transform.

    Args:
        rng: The item's generator.
        rotate: Maximum rotation in degrees (uniform in ``[-rotate, rotate]``).
        scale: Zoom range ``(lo, hi)`` (uniform; > 1 enlarges the content).
        translate: Maximum shift as a fraction of the side (uniform in ``[-translate, translate]`` per axis).

    Returns:
        ``theta: (2, 3)`` float32, output -> input in normalised coordinates.
    """
    angle = math.radians(rng.uniform(-rotate, rotate))
    s = rng.uniform(scale[0], scale[1])
    tx, ty = rng.uniform(-translate, translate, size=2) * 2.0  # the frame spans 2 in normalised coordinates
    cos, sin = math.cos(angle) / s, math.sin(angle) / s
    return torch.tensor([[cos, -sin, tx], [sin, cos, ty]], dtype=torch.float32)


def apply_affine(theta: torch.Tensor, image: torch.Tensor, mask: torch.Tensor | None = None
                 ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Resample ``image`` (``(C, H, W)`` or ``(T, C, H, W)``) and ``mask`` (``(H, W)``) with ``theta``."""
    frames = image if image.dim() == 4 else image.unsqueeze(0)  # (T, C, H, W)
    grid = F.affine_grid(theta.expand(frames.shape[0], 2, 3), list(frames.shape), align_corners=False)
    out = F.grid_sample(frames.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    out = out.to(image.dtype)
    out = out if image.dim() == 4 else out[0]
    if mask is None:
        return out, None
    m = mask[None, None].float()  # (1, 1, H, W): the same sampling grid as one frame
    m = F.grid_sample(m, grid[:1], mode="nearest", padding_mode="zeros", align_corners=False)
    return out, m[0, 0].round().to(mask.dtype)
