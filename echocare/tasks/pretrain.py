"""The pretraining objective: SimMIM reconstruction + hierarchical anatomy classification.

Wraps an :class:`echocare.models.pretrain.EchoCarePretrainModel` as an engine task:
``forward(batch) -> {"loss", "logs": {"loss_mim", "loss_hie"}, "recon"}``; the engine
does the backward. ``visualize(batch)`` gives the panels of the reconstruction grid.
"""

from __future__ import annotations

import logging

import torch
from torch import nn

from echocare.models.pretrain import token_mask_to_pixels

logger = logging.getLogger(__name__)

HIE_COLLAPSE_LOSS = 1e-3  # L_HIE below this ...
HIE_COLLAPSE_STEPS = 500  # ... within this many forward calls counts as an early collapse
HIE_CHECK_EVERY = 25  # the collapse is tracked on the device and read back once per this many calls
MIM_PLATEAU_WINDOW = 100  # L_MIM is averaged over windows of this many training forward calls ...
MIM_PLATEAU_STEPS = 1000  # ... and if no window up to this call is MIM_PLATEAU_DROP below calls 101-200' mean,
MIM_PLATEAU_DROP = 0.05  # the reconstruction is taken to be stuck on the mean-image plateau (one warning)


class PretrainTask(nn.Module):
    """Engine task around a pretraining model.

    Early-collapse check: when a labeled batch's L_HIE falls below ``HIE_COLLAPSE_LOSS`` within the first
    ``HIE_COLLAPSE_STEPS`` training forward calls, one warning is logged: the label space is trivially
    separable (typically one anatomy label per dataset, so the classifier only learns dataset identity) and
    the run is MIM-only from then on in effect (see docs/pretraining.md). The first collapsing call is tracked
    on the device and read back every ``HIE_CHECK_EVERY`` calls, so the check costs no per-step host sync.

    Plateau check: SimMIM first learns to paint a mean image, then (when it works) starts using the visible
    context and L_MIM drops. When no ``MIM_PLATEAU_WINDOW``-call mean of L_MIM up to call
    ``MIM_PLATEAU_STEPS`` is ``MIM_PLATEAU_DROP`` below the mean over calls 101-200, one warning is logged
    (the reconstruction sigmoid kept deeper encoders there; see docs/pretraining.md).

    Args:
        model: An ``EchoCarePretrainModel`` (``model(images, mask, targets) -> dict``).
        num_visuals: Images per reconstruction grid.
    """

    def __init__(self, model: nn.Module, num_visuals: int = 4) -> None:
        super().__init__()
        self.model = model
        self.num_visuals = int(num_visuals)
        self._calls = 0  # training forward calls so far
        self.hie_collapsed_at: int | None = None  # forward call at which the early collapse was seen
        self._hie_first: torch.Tensor | None = None  # first collapsing call so far (device), > STEPS = none
        self.mim_plateau_at: int | None = None  # forward call at which the plateau warning was given
        self._mim_ref: float | None = None  # mean L_MIM of calls 101-200
        self._mim_sum: torch.Tensor | None = None  # L_MIM summed over the current window, kept on the device
        self._mim_moved = False

    def _check_hie_collapse(self, loss_hie: torch.Tensor, targets: torch.Tensor | None) -> None:
        """Warn once when L_HIE collapses early on labeled batches (trivially separable label space)."""
        if self.hie_collapsed_at is not None or self._calls > HIE_COLLAPSE_STEPS:
            return
        if targets is not None:
            none = HIE_COLLAPSE_STEPS + 1
            hit = (loss_hie.detach() < HIE_COLLAPSE_LOSS) & (targets >= 0).any()  # labeled batch, tiny L_HIE
            call = torch.where(hit, self._calls, none)  # () on the device: no host sync
            self._hie_first = call if self._hie_first is None else torch.minimum(self._hie_first, call)
        if self._hie_first is None or (self._calls % HIE_CHECK_EVERY and self._calls != HIE_COLLAPSE_STEPS):
            return
        first = int(self._hie_first)  # one host sync per HIE_CHECK_EVERY calls
        if first <= HIE_COLLAPSE_STEPS:
            self.hie_collapsed_at = first
            logger.warning(
                "L_HIE collapsed early: below %.0e at training step %d. The anatomy labels are trivially "
                "separable (e.g. one label per dataset: the classifier only learns dataset identity), so the "
                "hierarchical loss adds nothing from here on and this run is in effect MIM only. Give finer labels "
                "(structures, views, classes: manifest 'labels' rules or 'label_csv') and label spaces with "
                "negatives, or set model.hie_weight=0. See docs/pretraining.md.",
                HIE_COLLAPSE_LOSS, first)

    def _check_mim_plateau(self, loss_mim: torch.Tensor) -> None:
        """Warn once when L_MIM has not left its early level within ``MIM_PLATEAU_STEPS`` calls."""
        if self._mim_moved or self.mim_plateau_at is not None or self._calls <= MIM_PLATEAU_WINDOW:
            return
        value = loss_mim.detach().float()
        self._mim_sum = value if self._mim_sum is None else self._mim_sum + value
        if self._calls % MIM_PLATEAU_WINDOW:
            return
        mean = float(self._mim_sum) / MIM_PLATEAU_WINDOW  # one host sync per window, not per step
        self._mim_sum = None
        if self._mim_ref is None:
            self._mim_ref = mean
        elif mean < (1.0 - MIM_PLATEAU_DROP) * self._mim_ref:
            self._mim_moved = True
            return
        if self._calls >= MIM_PLATEAU_STEPS:
            self.mim_plateau_at = self._calls
            logger.warning(
                "L_MIM is still on its early plateau after %d training steps (mean %.4f, steps %d-%d: %.4f; no "
                "%d-step mean fell %.0f%% below it): the decoder paints a mean image and ignores the visible "
                "context. With model.decoder_output=sigmoid this happened to encoders with 6 blocks in a stage and "
                "to some nano runs on small pools; use model.decoder_output=linear (SimMIM's raw head, the default) "
                "and model.weight_init=normal (the default). See docs/pretraining.md.",
                self._calls, mean, MIM_PLATEAU_WINDOW + 1, 2 * MIM_PLATEAU_WINDOW, self._mim_ref,
                MIM_PLATEAU_WINDOW, 100 * MIM_PLATEAU_DROP)

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
        if self.training:
            self._calls += 1
            self._check_hie_collapse(out["loss_hie"], targets)
            self._check_mim_plateau(out["loss_mim"])
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
