"""Batch augmentations of the EchoCare pretraining recipe on uint8 grayscale images.

Report §4 ("Pretraining settings"): random vertical flip (p=0.5), random horizontal flip (p=0.5),
random crop (p=0.5), weak colour jitter (p=0.2). Images here are single-channel, so the jitter is
brightness + contrast only (saturation and hue do not exist for grayscale).

How a non-square frame becomes a square input is ``fit``: ``"crop"`` (the default) keeps the aspect and
takes the centre square (random crops have aspect ratios ``crop_ratio`` in pixels); ``"stretch"`` resizes
the whole frame to the square, as the fine-tuning readers do (random crops take ``crop_scale`` of the
frame's area with aspect ratios ``crop_ratio`` *relative to the frame*, so objects keep the proportions
they have in fine-tuning).

All random numbers of a batch are drawn at once, ``torch.rand(B, 10)`` from one generator, in a fixed
layout, so a batch's augmentation depends only on that generator's seed (never on the flags or on
the image sizes). Cropping and resizing work on uint8; flips, float conversion and jitter are done
on the whole stacked batch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
import torch.nn.functional as F

# column layout of the per-batch random matrix
_HFLIP, _VFLIP, _CROP, _SCALE, _RATIO, _X, _Y, _JITTER, _BRIGHT, _CONTRAST = range(10)
NUM_RANDOM = 10
FITS = ("crop", "stretch")


def to_unit_float(x: torch.Tensor) -> torch.Tensor:
    """uint8 0..255 -> float32 in [0, 1] (multiplication by 1/255: within 1 ulp of ``x / 255``)."""
    return x.float().mul_(1.0 / 255.0)


def _check_range(name: str, lo_hi: Sequence[float], low: float) -> tuple[float, float]:
    if len(lo_hi) != 2 or not low <= float(lo_hi[0]) <= float(lo_hi[1]):
        raise ValueError(f"{name} must be (min, max) with {low} <= min <= max, got {tuple(lo_hi)}")
    return float(lo_hi[0]), float(lo_hi[1])


def _check_prob(name: str, p: float) -> float:
    if not 0.0 <= float(p) <= 1.0:
        raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    return float(p)


class PretrainAugment:
    """Flip / random-resized-crop / jitter / resize for a list of grayscale images.

    Args:
        img_size: output side length (square).
        augment: ``False`` turns every random op off (center square crop + resize only).
        hflip_p: probability of a horizontal flip.
        vflip_p: probability of a vertical flip.
        crop_p: probability of a random resized crop (else: center square crop of the full frame).
        crop_scale: area fraction range of the random crop.
        crop_ratio: aspect-ratio range (w/h) of the random crop.
        jitter_p: probability of brightness/contrast jitter.
        brightness: factor drawn from ``[1 - brightness, 1 + brightness]``.
        contrast: factor drawn from ``[1 - contrast, 1 + contrast]`` (blend towards the image mean).
        fit: ``"crop"`` (centre square, aspect kept) or ``"stretch"`` (whole frame resized to the square,
            like the fine-tuning readers); see the module docstring.

    Raises:
        ValueError: for probabilities outside [0, 1], malformed ranges or an unknown ``fit``.
    """

    def __init__(self, img_size: int = 256, augment: bool = True, hflip_p: float = 0.5, vflip_p: float = 0.5,
                 crop_p: float = 0.5, crop_scale: Sequence[float] = (0.67, 1.0),
                 crop_ratio: Sequence[float] = (3 / 4, 4 / 3), jitter_p: float = 0.2,
                 brightness: float = 0.2, contrast: float = 0.2, fit: str = "crop") -> None:
        if not isinstance(img_size, int) or img_size <= 0:
            raise ValueError(f"img_size must be a positive int, got {img_size!r}")
        if fit not in FITS:
            raise ValueError(f"fit must be one of {FITS}, got {fit!r}")
        self.fit = fit
        self.img_size = img_size
        self.augment = bool(augment)
        self.hflip_p = _check_prob("hflip_p", hflip_p)
        self.vflip_p = _check_prob("vflip_p", vflip_p)
        self.crop_p = _check_prob("crop_p", crop_p)
        self.jitter_p = _check_prob("jitter_p", jitter_p)
        self.crop_scale = _check_range("crop_scale", crop_scale, 0.0)
        if self.crop_scale[1] > 1.0 or self.crop_scale[0] <= 0.0:
            raise ValueError(f"crop_scale must lie in (0, 1], got {tuple(crop_scale)}")
        self.crop_ratio = _check_range("crop_ratio", crop_ratio, 1e-6)
        self.brightness = _check_prob("brightness", brightness)
        self.contrast = _check_prob("contrast", contrast)

    def crop_box(self, height: int, width: int, u: torch.Tensor) -> tuple[int, int, int, int]:
        """Crop ``(top, left, h, w)`` for one image from its row ``u`` of the random matrix."""
        if self.augment and float(u[_CROP]) < self.crop_p:
            scale = self.crop_scale[0] + float(u[_SCALE]) * (self.crop_scale[1] - self.crop_scale[0])
            log_lo, log_hi = math.log(self.crop_ratio[0]), math.log(self.crop_ratio[1])
            ratio = math.exp(log_lo + float(u[_RATIO]) * (log_hi - log_lo))
            if self.fit == "stretch":  # ratio relative to the frame: sides as fractions of the frame's sides
                w = min(width, max(1, round(min(1.0, math.sqrt(scale * ratio)) * width)))
                h = min(height, max(1, round(min(1.0, math.sqrt(scale / ratio)) * height)))
            else:  # ratio in pixels
                area = height * width
                w = min(width, max(1, round(math.sqrt(scale * area * ratio))))
                h = min(height, max(1, round(math.sqrt(scale * area / ratio))))
            top = min(height - h, int(float(u[_Y]) * (height - h + 1)))
            left = min(width - w, int(float(u[_X]) * (width - w + 1)))
            return top, left, h, w
        if self.fit == "stretch":
            return 0, 0, height, width
        side = min(height, width)
        return (height - side) // 2, (width - side) // 2, side, side

    def geometry(self, images: Sequence[torch.Tensor], rand: torch.Tensor) -> torch.Tensor:
        """Crop + resize + flip every image -> uint8 (B, 1, S, S) (flips are per-image copies, cheaper
        than boolean-indexed batch flips)."""
        s = self.img_size
        out = torch.empty(len(images), 1, s, s, dtype=torch.uint8)
        hflip = (rand[:, _HFLIP] < self.hflip_p).tolist() if self.augment else [False] * len(images)
        vflip = (rand[:, _VFLIP] < self.vflip_p).tolist() if self.augment else [False] * len(images)
        for i, img in enumerate(images):
            if img.dtype != torch.uint8 or img.dim() != 2:
                raise ValueError(f"image {i} must be a 2-D uint8 tensor (H, W), got {img.dtype} {tuple(img.shape)}")
            top, left, h, w = self.crop_box(img.shape[0], img.shape[1], rand[i])
            src = img[top:top + h, left:left + w]  # (h, w) view
            if h != s or w != s:
                # uint8 bilinear with antialias: (1, 1, h, w) -> (S, S)
                src = F.interpolate(src[None, None], size=(s, s), mode="bilinear", antialias=True,
                                    align_corners=False)[0, 0]
            dims = (-2,) * vflip[i] + (-1,) * hflip[i]
            out[i, 0] = src.flip(dims) if dims else src
        return out

    def __call__(self, images: Sequence[torch.Tensor], generator: torch.Generator | None = None,
                 dtype: torch.dtype = torch.float32) -> torch.Tensor:
        """Augment a batch.

        Args:
            images: B uint8 tensors (H_i, W_i), sizes may differ.
            generator: source of the batch's random numbers.
            dtype: ``torch.float32`` -> values in [0, 1]; ``torch.uint8`` -> values 0..255 (jittered
                images rounded back to 8 bits), 4x cheaper to ship between processes.

        Returns:
            Tensor (B, 1, S, S) of ``dtype``.
        """
        if len(images) == 0:
            raise ValueError("PretrainAugment got an empty batch")
        if dtype not in (torch.float32, torch.uint8):
            raise ValueError(f"dtype must be torch.float32 or torch.uint8, got {dtype}")
        rand = torch.rand(len(images), NUM_RANDOM, generator=generator)  # (B, 10), always drawn in full
        x = self.geometry(images, rand)  # (B, 1, S, S) uint8, flipped
        jittered = []
        if self.augment and self.jitter_p > 0:
            jittered = torch.nonzero(rand[:, _JITTER] < self.jitter_p).flatten().tolist()
        if dtype == torch.uint8:
            for i in jittered:
                img = x[i].float().mul_(1.0 / 255.0)  # (1, S, S)
                self._jitter(img, float(rand[i, _BRIGHT]), float(rand[i, _CONTRAST]))
                x[i] = img.mul_(255.0).round_().to(torch.uint8)
            return x
        y = to_unit_float(x)  # (B, 1, S, S) float32
        for i in jittered:
            self._jitter(y[i], float(rand[i, _BRIGHT]), float(rand[i, _CONTRAST]))
        return y

    def _jitter(self, img: torch.Tensor, u_bright: float, u_contrast: float) -> None:
        """In place on img: (1, S, S) float in [0, 1]: brightness then contrast (blend towards the mean)."""
        bright = 1.0 + (2.0 * u_bright - 1.0) * self.brightness
        contrast = 1.0 + (2.0 * u_contrast - 1.0) * self.contrast
        img.mul_(bright).clamp_(0.0, 1.0)
        mean = img.mean()
        img.sub_(mean).mul_(contrast).add_(mean).clamp_(0.0, 1.0)

    def __repr__(self) -> str:
        return (f"PretrainAugment(img_size={self.img_size}, augment={self.augment}, hflip_p={self.hflip_p}, "
                f"vflip_p={self.vflip_p}, crop_p={self.crop_p}, crop_scale={self.crop_scale}, "
                f"crop_ratio={self.crop_ratio}, jitter_p={self.jitter_p}, brightness={self.brightness}, "
                f"contrast={self.contrast}, fit={self.fit!r})")
