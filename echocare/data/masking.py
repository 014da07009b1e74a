"""SimMIM random block masks, generated for a whole batch at once at token resolution.

The image (``img_size`` square) is divided into ``mask_patch_size`` blocks; exactly
``ceil(blocks * mask_ratio)`` blocks are masked per image, and each block is expanded to the
``mask_patch_size // patch_size`` tokens it covers, so the mask has shape ``(B, H/p, W/p)`` with
``p`` the model patch size (an int: ``data`` never imports ``models``). 1 = masked token.
"""

from __future__ import annotations

import math

import torch


def check_mask_geometry(img_size: int, patch_size: int, mask_patch_size: int, mask_ratio: float) -> None:
    """Raise ``ValueError`` naming the offending value when the mask cannot tile the image/tokens."""
    for name, value in (("img_size", img_size), ("patch_size", patch_size), ("mask_patch_size", mask_patch_size)):
        if not isinstance(value, int) or value <= 0:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if img_size % mask_patch_size:
        raise ValueError(f"img_size {img_size} is not a multiple of mask_patch_size {mask_patch_size}")
    if mask_patch_size % patch_size:
        raise ValueError(f"mask_patch_size {mask_patch_size} is not a multiple of patch_size {patch_size}")
    if not 0.0 <= float(mask_ratio) <= 1.0:
        raise ValueError(f"mask_ratio must be in [0, 1], got {mask_ratio}")


class MaskGenerator:
    """Batch SimMIM mask generator.

    Args:
        img_size: square input size in pixels.
        patch_size: model patch size ``p`` (token = p×p pixels).
        mask_patch_size: masking block size in pixels (32 in SimMIM/EchoCare).
        mask_ratio: fraction of blocks masked (0.5 in EchoCare).

    Raises:
        ValueError: if the sizes do not divide each other or the ratio is outside [0, 1].
    """

    def __init__(self, img_size: int = 256, patch_size: int = 4, mask_patch_size: int = 32,
                 mask_ratio: float = 0.5) -> None:
        check_mask_geometry(img_size, patch_size, mask_patch_size, mask_ratio)
        self.img_size = img_size
        self.patch_size = patch_size
        self.mask_patch_size = mask_patch_size
        self.mask_ratio = float(mask_ratio)
        self.blocks_per_side = img_size // mask_patch_size
        self.scale = mask_patch_size // patch_size
        self.num_blocks = self.blocks_per_side ** 2
        self.num_masked = int(math.ceil(self.num_blocks * self.mask_ratio))

    @property
    def token_grid(self) -> int:
        """Tokens per side of the output mask (``img_size // patch_size``)."""
        return self.img_size // self.patch_size

    def __call__(self, batch_size: int, generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Masks for ``batch_size`` images.

        Args:
            batch_size: number of masks.
            generator: random source.
            dtype: output dtype (uint8 is cheaper to ship between processes).

        Returns:
            Tensor (B, H/p, W/p) of 0/1, exactly ``num_masked * scale**2`` ones per image.
        """
        g = self.blocks_per_side
        # scores: (B, g*g); the num_masked lowest-ranked blocks are masked
        scores = torch.rand(batch_size, self.num_blocks, generator=generator)
        order = scores.argsort(dim=1)[:, : self.num_masked]
        blocks = torch.zeros(batch_size, self.num_blocks, dtype=dtype)
        blocks.scatter_(1, order, 1)
        blocks = blocks.view(batch_size, g, g)  # (B, g, g)
        # expand each block to scale×scale tokens -> (B, g*scale, g*scale)
        return blocks.repeat_interleave(self.scale, dim=1).repeat_interleave(self.scale, dim=2)

    def __repr__(self) -> str:
        return (f"MaskGenerator(img_size={self.img_size}, patch_size={self.patch_size}, "
                f"mask_patch_size={self.mask_patch_size}, mask_ratio={self.mask_ratio})")
