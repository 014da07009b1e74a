"""EchoCare models: Swin encoder with mask token, decoders, hierarchical classifier, registry.

Importing this package registers the ``echocare_swin_*`` encoders with timm.
"""

from __future__ import annotations

from typing import Any

from echocare.models.classifier import HierarchicalClassifier, HierarchyIndex
from echocare.models.coherence import coherent_probs
from echocare.models.decoders import DECODERS, ProgressiveDecoder, SimMIMDecoder, build_decoder
from echocare.models.encoder import EchoCareSwin
from echocare.models.pretrain import EchoCarePretrainModel, create_model, token_mask_to_pixels
from echocare.models.registry import create_encoder, list_models

__all__ = [
    "DECODERS",
    "EchoCarePretrainModel",
    "EchoCareSwin",
    "HierarchicalClassifier",
    "HierarchyIndex",
    "ProgressiveDecoder",
    "SimMIMDecoder",
    "build_decoder",
    "coherent_probs",
    "create_encoder",
    "create_model",
    "list_models",
    "load_backbone",
    "token_mask_to_pixels",
]


def __getattr__(name: str) -> Any:
    # load_backbone lives in echocare.models.hub (export side, owned separately); resolved lazily so the
    # model package imports without it.
    if name == "load_backbone":
        from echocare.models.hub import load_backbone

        return load_backbone
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
