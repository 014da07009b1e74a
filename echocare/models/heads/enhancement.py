"""Image enhancement (seed 003 §4.5.6): an encoder-decoder generator and a PatchGAN discriminator.

The generator is the fine-tuned backbone (its NCHW pyramid) plus a UNETR-style decoder back to a
one-channel image. By default it predicts a *residual*: ``enhanced = input + delta`` with the last
conv zero-initialised, so an untrained head is exactly the identity and training only has to learn
the correction. The discriminator is pix2pix's N-layer PatchGAN (instance norm, LeakyReLU), scoring
overlapping patches as real (high-quality domain) or fake.

Training is EnlightenGAN-style and unpaired by default (see :mod:`echocare.losses.enhancement`):
LSGAN generator + discriminator terms and a structure term 1 - SSIM(output, input); samples whose
low-quality image has a same-named high-quality reference (``paired``) get L1 + (1 - SSIM) to it
instead of the structure term. Both players are trained from **one** loss and one optimizer: the
generator's adversarial term runs the discriminator with *detached* parameters
(:func:`torch.func.functional_call`), and the discriminator's term sees a detached fake, so one
backward gives each player exactly its own gradient (simultaneous gradient descent). That keeps
the head compatible with the shared trainer (``loss(outputs, targets) -> {"loss", "logs"}``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.func import functional_call

from echocare.losses.enhancement import lsgan_loss, paired_enhancement_loss, ssim_loss
from echocare.models.heads.common import require_keys
from echocare.models.heads.unetr import UnetrPyramidDecoder


class PatchDiscriminator(nn.Module):
    """pix2pix N-layer PatchGAN discriminator.

    Args:
        in_chans: image channels.
        base_channels: width of the first conv (doubled per layer, capped at 8x).
        num_layers: stride-2 conv layers after the first one.

    Forward: (B, C, H, W) → (B, 1, h, w) patch scores (unbounded; LSGAN targets 1 real / 0 fake).
    """

    def __init__(self, in_chans: int = 1, base_channels: int = 32, num_layers: int = 3) -> None:
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_chans, base_channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        ch = base_channels
        for i in range(1, num_layers + 1):
            out = base_channels * min(2**i, 8)
            stride = 2 if i < num_layers else 1
            layers += [nn.Conv2d(ch, out, 4, stride, 1, bias=False), nn.InstanceNorm2d(out),
                       nn.LeakyReLU(0.2, True)]
            ch = out
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Patch scores (B, 1, h, w)."""
        return self.net(x)


class EnhancementHead(UnetrPyramidDecoder):
    """Generator decoder (features → one-channel image) plus a PatchGAN discriminator.

    Args:
        feature_info: backbone feature description (power-of-two strides).
        in_chans: channels of the input / output image.
        feature_size: decoder width at full resolution (SwinUNETR convention ``F * max(1, s/2)``).
        norm_name: MONAI norm for the decoder blocks.
        residual: predict ``input + delta`` (zero-initialised delta = identity at start); else a
            sigmoid image.
        disc_channels: discriminator base width.
        disc_layers: discriminator stride-2 layers.
        adv_weight: weight of the LSGAN terms (generator and discriminator); 0 = no GAN.
        structure_weight: weight of 1 - SSIM(output, input) on unpaired samples.
        l1_weight: weight of L1 to the reference on paired samples.
        ssim_weight: weight of 1 - SSIM to the reference on paired samples.

    Forward: ``features`` (list of NCHW maps), ``image`` (B, C, H, W) →
    ``{"enhanced": (B, C, H, W), "input": image}``. Targets for :meth:`loss`:
    ``{"high": (B, C, H, W), "paired": (B,) bool}`` (``paired`` missing = all unpaired).
    """

    task = "enhancement"

    def __init__(
        self,
        feature_info: Any,
        in_chans: int = 1,
        feature_size: int = 16,
        norm_name: str = "instance",
        residual: bool = True,
        disc_channels: int = 32,
        disc_layers: int = 3,
        adv_weight: float = 0.1,
        structure_weight: float = 1.0,
        l1_weight: float = 1.0,
        ssim_weight: float = 1.0,
    ) -> None:
        super().__init__()
        self.build_decoder(feature_info, in_chans, in_chans, feature_size, norm_name, "enhancement")
        self.residual = residual
        self.weights = dict(adv=adv_weight, structure=structure_weight, l1=l1_weight, ssim=ssim_weight)
        if residual:  # identity at initialisation
            nn.init.zeros_(self.out.conv.conv.weight)
            nn.init.zeros_(self.out.conv.conv.bias)
        self.discriminator = PatchDiscriminator(in_chans, disc_channels, disc_layers)

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Enhance ``image`` (B, C, H, W) from its backbone features."""
        out = self.decode(features, image)  # (B, C, H, W)
        enhanced = image + out if self.residual else torch.sigmoid(out)
        return {"enhanced": enhanced, "input": image}

    def discriminate(self, images: torch.Tensor, frozen: bool = False) -> torch.Tensor:
        """Patch scores (B, 1, h, w); ``frozen`` runs with detached parameters (no gradient to D)."""
        if not frozen:
            return self.discriminator(images)
        params = {n: p.detach() for n, p in self.discriminator.named_parameters()}
        return functional_call(self.discriminator, params, (images,))

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Generator + discriminator loss (see the module docstring).

        Returns:
            ``{"loss", "logs"}``; logs hold the terms that were computed (``g_adv``, ``d_loss``,
            ``structure``, ``l1``, ``ssim_loss``) and ``paired_frac``.
        """
        require_keys(targets, ["high"], "enhancement")
        fake, inp, high = outputs["enhanced"], outputs["input"], targets["high"].to(outputs["enhanced"])
        if high.shape != fake.shape:
            raise ValueError(f"targets['high'] should be {tuple(fake.shape)}, got {tuple(high.shape)}")
        b = fake.shape[0]
        paired = targets.get("paired")
        paired = torch.zeros(b, dtype=torch.bool) if paired is None else torch.as_tensor(paired).bool().reshape(-1)
        if paired.numel() != b:
            raise ValueError(f"targets['paired'] should have {b} flags, got {paired.numel()}")
        paired = paired.to(fake.device)
        w = self.weights
        logs: dict[str, torch.Tensor] = {"paired_frac": paired.float().mean()}
        total = fake.new_zeros(())
        n_p = int(paired.sum())
        if n_p:
            parts = paired_enhancement_loss(fake[paired], high[paired], w["l1"], w["ssim"])
            total = total + parts["loss"] * (n_p / b)
            logs.update(l1=parts["l1"].detach(), ssim_loss=parts["ssim_loss"].detach())
        if n_p < b and w["structure"]:
            structure = ssim_loss(fake[~paired], inp[~paired]).mean()
            total = total + w["structure"] * structure * ((b - n_p) / b)
            logs["structure"] = structure.detach()
        if w["adv"]:
            g_adv = lsgan_loss(self.discriminate(fake, frozen=True), real=True)
            d_loss = 0.5 * (lsgan_loss(self.discriminate(high), real=True)
                            + lsgan_loss(self.discriminate(fake.detach()), real=False))
            total = total + w["adv"] * (g_adv + d_loss)
            logs.update(g_adv=g_adv.detach(), d_loss=d_loss.detach())
        return {"loss": total, "logs": logs}

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready ``enhanced`` images (B, C, H, W) clamped to [0, 1]."""
        return {"enhanced": outputs["enhanced"].float().clamp(0.0, 1.0)}
