"""EchoCare pretraining model: masked Swin encoder + image decoder + hierarchical classifier.

``L_PRE = L_MIM + hie_weight * L_HIE`` (tech report §3.1). Images are fed as-is in [0, 1]; the library
never applies a mean/std normalisation.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from echocare.losses.hierarchical import hierarchical_loss
from echocare.losses.masked_l1 import masked_l1_loss
from echocare.losses.patch_norm import patch_mean_std
from echocare.models.classifier import HierarchicalClassifier, HierarchyIndex
from echocare.models.decoders import build_decoder
from echocare.models.encoder import EchoCareSwin
from echocare.models.registry import create_encoder
from echocare.models.weight_init import init_pretraining_weights

__all__ = ["EchoCarePretrainModel", "create_model", "token_mask_to_pixels"]


def token_mask_to_pixels(mask: torch.Tensor, patch_size: int) -> torch.Tensor:
    """Upsample a token mask (B, h, w) to a pixel mask (B, 1, h*p, w*p) by repetition."""
    pixel = mask.repeat_interleave(patch_size, dim=1).repeat_interleave(patch_size, dim=2)  # (B, H, W)
    return pixel.unsqueeze(1)


class EchoCarePretrainModel(nn.Module):
    """Encoder + decoder (+ hierarchical classifier when an ontology is given).

    Args:
        encoder: an ``EchoCareSwin``.
        decoder: ``"simmim"``, ``"progressive"`` or ``"unetr"`` (see :mod:`echocare.models.decoders`).
        ontology: anatomy ontology (``ancestor_index``, ``parent_index``, ``level_nodes``) or None for
            MIM only (``logits`` is then None and ``loss_hie`` 0).
        hie_weight: weight lambda of the hierarchical loss.
        decoder_dim: progressive / unetr decoder width (default ``min(48, embed_dim)``).
        classifier_hidden: classifier MLP width (default ``encoder.num_features``).
        classifier_dropout: dropout inside the classifier MLP.
        decoder_output: ``"linear"`` (raw, SimMIM's head; default) or ``"sigmoid"`` (reconstruction in [0, 1]).
        target_norm_patch: 0 = regress raw pixels (eq. 1); k >= 2 = regress every k x k block normalised
            by its own mean and std (MAE's ``norm_pix_loss``; needs ``decoder_output="linear"``).
    """

    def __init__(
        self,
        encoder: EchoCareSwin,
        decoder: str = "simmim",
        ontology: Any | None = None,
        hie_weight: float = 1.0,
        decoder_dim: int | None = None,
        classifier_hidden: int | None = None,
        classifier_dropout: float = 0.0,
        decoder_output: str = "linear",
        target_norm_patch: int = 0,
    ) -> None:
        super().__init__()
        if target_norm_patch and (target_norm_patch < 2 or decoder_output != "linear"):
            raise ValueError(
                f"target_norm_patch={target_norm_patch} needs a block side >= 2 and decoder_output='linear' "
                f"(normalised targets are not in [0, 1]); got decoder_output={decoder_output!r}"
            )
        self.target_norm_patch = int(target_norm_patch)
        self.encoder = encoder
        self.decoder_kind = decoder
        channels = [int(info["num_chs"]) for info in encoder.feature_info]
        self.decoder = build_decoder(decoder, channels, encoder.patch_size, encoder.in_chans, decoder_dim,
                                     output=decoder_output)
        self.hie_weight = float(hie_weight)
        self.hierarchy: HierarchyIndex | None = None
        self.classifier: HierarchicalClassifier | None = None
        if ontology is not None:
            self.hierarchy = HierarchyIndex(ontology)
            self.classifier = HierarchicalClassifier(
                encoder.num_features, len(self.hierarchy), hidden_dim=classifier_hidden, dropout=classifier_dropout
            )

    @property
    def patch_size(self) -> int:
        """Encoder patch size p: the mask is given at (H/p, W/p)."""
        return self.encoder.patch_size

    @property
    def num_classes(self) -> int:
        """Number of ontology nodes N (0 without an ontology)."""
        return 0 if self.hierarchy is None else len(self.hierarchy)

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Encoder parameters exempt from weight decay, with their ``encoder.`` prefix."""
        return {f"encoder.{name}" for name in self.encoder.no_weight_decay()}

    def _check_inputs(self, images: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor | None) -> None:
        if images.ndim != 4 or images.shape[1] != self.encoder.in_chans:
            raise ValueError(
                f"images must be (B, {self.encoder.in_chans}, H, W), got {tuple(images.shape)}"
            )
        p = self.patch_size
        b, _, h, w = images.shape
        if h % p or w % p:
            raise ValueError(f"image size {(h, w)} is not a multiple of the patch size {p}")
        if tuple(mask.shape) != (b, h // p, w // p):
            raise ValueError(f"mask must be (B, H/p, W/p) = {(b, h // p, w // p)}, got {tuple(mask.shape)}")
        if targets is not None:
            if self.hierarchy is None:
                raise ValueError("targets were given but the model has no ontology (create it with ontology=...)")
            if tuple(targets.shape) != (b, self.num_classes):
                raise ValueError(f"targets must be (B, N) = {(b, self.num_classes)}, got {tuple(targets.shape)}")

    def forward(
        self, images: torch.Tensor, mask: torch.Tensor, targets: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor | None]:
        """Reconstruct masked patches and classify the image in the ontology.

        Args:
            images: (B, C, H, W) float in [0, 1].
            mask: (B, H/p, W/p) in {0, 1}, 1 = masked token.
            targets: (B, N) in {1, 0, -1} or None (MIM only).

        Returns:
            dict with ``loss`` (= loss_mim + hie_weight * loss_hie), ``loss_mim``, ``loss_hie`` (0 without
            targets), ``recon`` (B, C, H, W) in image space (in [0, 1] with the sigmoid output; with
            ``target_norm_patch`` the prediction mapped back with each block's true mean and std, for
            display only) and ``logits`` (B, N) or None without ontology.
        """
        self._check_inputs(images, mask, targets)
        mask = mask.to(images.dtype)
        final, features = self.encoder.forward_intermediates(
            images, indices=self.decoder.feature_indices, norm=True, mask=mask
        )  # final: (B, H/8p, W/8p, C_last) NHWC; features: NCHW per stage
        pixel_mask = token_mask_to_pixels(mask, self.patch_size)  # (B, 1, H, W)
        recon = self.decoder(features, images * (1.0 - pixel_mask))  # (B, C, H, W)
        if self.target_norm_patch:
            mean, std = patch_mean_std(images, self.target_norm_patch)  # (B, C, H, W) each, per block
            loss_mim = masked_l1_loss(recon, (images.float() - mean) / std, pixel_mask)
            recon = recon.float() * std + mean  # back to image space for the panels
        else:
            loss_mim = masked_l1_loss(recon, images, pixel_mask)

        logits = self.classifier(final) if self.classifier is not None else None  # (B, N)
        if targets is not None and logits is not None:
            loss_hie = hierarchical_loss(logits, targets, self.hierarchy)
        elif logits is not None:
            # Zero that stays attached to the classifier, so DDP sees every parameter used.
            loss_hie = logits.float().sum() * 0.0
        else:
            loss_hie = loss_mim.new_zeros(())
        loss = loss_mim + self.hie_weight * loss_hie
        return {"loss": loss, "loss_mim": loss_mim, "loss_hie": loss_hie, "recon": recon, "logits": logits}


def create_model(
    name: str,
    ontology: Any | None = None,
    in_chans: int = 1,
    img_size: int | tuple[int, int] = 256,
    patch_size: int = 4,
    window_size: int = 8,
    decoder: str = "simmim",
    hie_weight: float = 1.0,
    drop_path_rate: float = 0.1,
    decoder_dim: int | None = None,
    classifier_hidden: int | None = None,
    classifier_dropout: float = 0.0,
    decoder_output: str = "linear",
    target_norm_patch: int = 0,
    weight_init: str = "normal",
    **encoder_kwargs: Any,
) -> EchoCarePretrainModel:
    """Build an EchoCare pretraining model.

    Args:
        name: encoder name from ``list_models()`` (e.g. ``"echocare_swin_base"``).
        ontology: anatomy ontology, or None for MIM-only pretraining.
        in_chans: image channels (1 for grayscale ultrasound).
        img_size: nominal input size (int or (H, W)); other sizes that are multiples of ``patch_size``
            are accepted at run time.
        patch_size: 4 (strides 4..32) or 2 (the report's 2x2 patches: strides 2..16).
        window_size: attention window (8 divides the token grids of 256-px inputs).
        decoder: ``"simmim"`` (linear head), ``"progressive"`` (SwinUNETR-style upsampling) or ``"unetr"``
            (the segmentation head's decoder, transferable to it).
        hie_weight: lambda in ``L = L_MIM + lambda * L_HIE``.
        drop_path_rate: stochastic depth of the encoder.
        decoder_dim: progressive / unetr decoder width.
        classifier_hidden: hierarchical classifier MLP width.
        classifier_dropout: dropout in the classifier MLP.
        decoder_output: ``"linear"`` (raw, SimMIM's head; default) or ``"sigmoid"`` (reconstruction in [0, 1]).
        target_norm_patch: 0 = raw-pixel targets (eq. 1); k >= 2 = per-block normalised targets (k x k).
        weight_init: weight initialisation of the fresh network, ``"normal"`` or ``"timm"``
            (:mod:`echocare.models.weight_init`).
        **encoder_kwargs: further ``SwinTransformer`` arguments (``embed_dim``, ``depths``, ...).
    """
    encoder = create_encoder(
        name,
        in_chans=in_chans,
        img_size=img_size,
        patch_size=patch_size,
        window_size=window_size,
        drop_path_rate=drop_path_rate,
        **encoder_kwargs,
    )
    model = EchoCarePretrainModel(
        encoder,
        decoder=decoder,
        ontology=ontology,
        hie_weight=hie_weight,
        decoder_dim=decoder_dim,
        classifier_hidden=classifier_hidden,
        classifier_dropout=classifier_dropout,
        decoder_output=decoder_output,
        target_norm_patch=target_norm_patch,
    )
    return init_pretraining_weights(model, weight_init)
