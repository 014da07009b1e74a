"""Weight initialisation of a fresh pretraining model.

Two schemes, applied by :func:`~echocare.models.pretrain.create_model` to the network it has just built:

* ``"normal"`` (default): the patch-embedding conv initialised as the linear layer it is, ``N(0, 0.02)``
  weights and zero bias; the relative-position bias tables and the mask token zero; the SimMIM head's
  1x1 conv ``N(0, 0.02)`` with zero bias. This is the initialisation of HF transformers'
  ``SwinForMaskedImageModeling``. Attention and MLP linears keep timm's truncated ``N(0, 0.02)``, which it
  equals in effect.
* ``"timm"``: what timm's ``SwinTransformer`` and the original SimMIM code leave there: PyTorch's default
  conv init (Kaiming-uniform weights and a uniform bias of ±1/sqrt(fan_in)) for the patch embedding and
  the SimMIM head, truncated ``N(0, 0.02)`` relative-position tables and mask token.

On HC18 at 64 px the nano encoder reconstructed better with ``"normal"`` at every step of the first 500
(L_MIM 0.0800 against 0.0856 at step 500, bench/results/mim_init.md; transfer: docs/results.md, table 12).
The progressive and unetr decoders and the hierarchical classifier keep their own initialisation in both
schemes. Fine-tuning from random
weights builds a bare encoder with :func:`~echocare.models.registry.create_encoder`, which this does not touch.
"""

from __future__ import annotations

import torch
from torch import nn

from echocare.models.decoders import SimMIMDecoder

__all__ = ["INITS", "init_pretraining_weights"]

INITS = ("normal", "timm")


@torch.no_grad()
def init_pretraining_weights(model: nn.Module, scheme: str = "normal") -> nn.Module:
    """Initialise a freshly built pretraining model in place (see the module docstring).

    Args:
        model: an ``EchoCarePretrainModel`` (``encoder`` with ``patch_embed.proj`` and ``mask_token``;
            ``decoder``, whose ``proj`` conv is re-initialised when it is the SimMIM head).
        scheme: ``"normal"`` or ``"timm"`` (leaves the model as built).

    Returns:
        ``model``.

    Raises:
        ValueError: on an unknown scheme.
    """
    if scheme not in INITS:
        raise ValueError(f"unknown weight init {scheme!r}; choose one of {', '.join(INITS)}")
    if scheme == "timm":
        return model
    encoder = model.encoder
    _normal_zero_bias(encoder.patch_embed.proj)  # (D, C, p, p): a linear map of each p x p patch
    for name, param in encoder.named_parameters():
        if name.endswith("relative_position_bias_table"):
            param.zero_()
    encoder.mask_token.zero_()
    if isinstance(model.decoder, SimMIMDecoder):
        _normal_zero_bias(model.decoder.proj)
    return model


def _normal_zero_bias(layer: nn.Module, std: float = 0.02) -> None:
    layer.weight.normal_(0.0, std)
    if layer.bias is not None:
        layer.bias.zero_()
