"""The pretraining objective: SimMIM reconstruction + hierarchical anatomy classification.

Wraps an :class:`echocare.models.pretrain.EchoCarePretrainModel` as an engine task:
``forward(batch) -> {"loss", "logs": {"loss_mim", "loss_hie"}, "recon"}``; the engine
does the backward. ``visualize(batch)`` gives the panels of the reconstruction grid.
"""

from __future__ import annotations

import torch
from torch import nn

from echocare.models.pretrain import token_mask_to_pixels


class PretrainTask(nn.Module):
    """Engine task around a pretraining model.

    Args:
        model: An ``EchoCarePretrainModel`` (``model(images, mask, targets) -> dict``).
        num_visuals: Images per reconstruction grid.
    """

    def __init__(self, model: nn.Module, num_visuals: int = 4) -> None:
        super().__init__()
        self.model = model
        self.num_visuals = int(num_visuals)

    def forward(self, batch: dict) -> dict:
        """Run the model on a loader batch.

        Args:
            batch: ``{"image": (B,C,H,W) in [0,1], "mask": (B,H/p,W/p), "targets": (B,N) or absent}``.

        Returns:
            ``{"loss": scalar, "logs": {"loss_mim", "loss_hie"}, "recon": (B,C,H,W)}``.
        """
        for key in ("image", "mask"):
            if key not in batch:
                raise KeyError(f"pretrain batch has no {key!r} entry (keys: {sorted(batch)})")
        targets = batch.get("targets")
        if targets is not None and getattr(self.model, "num_classes", 0) == 0:
            targets = None  # MIM-only model (no ontology): labels are ignored by design
        out = self.model(batch["image"], batch["mask"], targets)
        return {
            "loss": out["loss"],
            "logs": {"loss_mim": out["loss_mim"].detach(), "loss_hie": out["loss_hie"].detach()},
            "recon": out["recon"],
        }

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute encoder activations in backward (timm gradient checkpointing)."""
        self.model.encoder.set_grad_checkpointing(enable)

    @torch.no_grad()
    def visualize(self, batch: dict) -> dict[str, torch.Tensor]:
        """Panels for a reconstruction grid (first ``num_visuals`` images of ``batch``).

        Returns:
            Ordered ``{"input", "masked", "reconstruction", "target"}``, each (K, C, H, W) in [0, 1];
            ``reconstruction`` is the prediction in the masked region pasted into the visible pixels (the
            loss ignores the prediction on visible pixels, so showing it there would only show noise);
            ``target`` shows the original pixels of the masked region only (what the loss compares).
        """
        k = min(self.num_visuals, int(batch["image"].shape[0]))
        images = batch["image"][:k].float()  # (K, C, H, W)
        mask = batch["mask"][:k].to(images.dtype)  # (K, H/p, W/p)
        targets = batch.get("targets")
        if targets is not None and getattr(self.model, "num_classes", 0) > 0:
            targets = targets[:k]
        else:
            targets = None
        out = self.model(images, mask, targets)
        pixel = token_mask_to_pixels(mask, self.model.patch_size)  # (K, 1, H, W)
        recon = out["recon"].float().clamp(0, 1)
        return {
            "input": images,
            "masked": images * (1 - pixel),
            "reconstruction": recon * pixel + images * (1 - pixel),
            "target": images * pixel,
        }
