"""3D-CNN clip classifiers (WAUVE's clip model family, seed 004) beside the Swin + temporal head.

WAUVE classifies each 8-frame clip with an I3D ResNet-50 and averages the clip probabilities.
:class:`Video3DClassifier` offers:

* ``"i3d_r50"``: torchvision's ResNet-50 *inflated* to 3-D (Carreira & Zisserman 2017) with the
  temporal kernels of SlowFast's I3D-R50 (the framework WAUVE used): 5x7x7 stem; 3x1x1 first
  convs in every res2 block, in alternate res3/res4 blocks (starting with the first) and in
  alternate res5 blocks (starting with the second); a temporal max-pool of 2 after res2.
  :func:`inflate_resnet` can inflate any 2-D torchvision ResNet, including one whose 2-D weights
  a user loaded from a local file (each 2-D kernel is repeated over time and divided by its
  temporal size, so a static clip gives the 2-D activations away from the clip ends);
* ``"r3d_18"``, ``"mc3_18"``, ``"r2plus1d_18"``: torchvision's video ResNets.

All are built with ``weights=None`` (nothing is downloaded) and a ``in_chans``-channel stem.
Interface as the other heads' models: ``forward(clips (B, T, C, H, W)) -> {"logits": (B, K)}``,
``loss(outputs, {"label"})``, ``predict(outputs)``; so :func:`~echocare.models.heads.video.video_scores`
averages its clip probabilities unchanged.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch import nn

from echocare.models.heads.classification import class_probabilities, classification_loss
from echocare.models.heads.common import require_keys

ARCHS = ("i3d_r50", "r3d_18", "mc3_18", "r2plus1d_18")


def _inflate_conv(conv: nn.Conv2d, kt: int, stride_t: int = 1) -> nn.Conv3d:
    """Conv2d → Conv3d with temporal kernel ``kt`` (zero 'same' padding); weights repeated / kt."""
    out = nn.Conv3d(conv.in_channels, conv.out_channels, (kt, *conv.kernel_size), (stride_t, *conv.stride),
                    (kt // 2, *conv.padding), (1, *conv.dilation), conv.groups, conv.bias is not None)
    with torch.no_grad():
        out.weight.copy_(conv.weight.unsqueeze(2).repeat(1, 1, kt, 1, 1) / kt)  # (O, I/g, kt, kh, kw)
        if conv.bias is not None:
            out.bias.copy_(conv.bias)
    return out


def _inflate_bn(bn: nn.BatchNorm2d) -> nn.BatchNorm3d:
    out = nn.BatchNorm3d(bn.num_features, bn.eps, bn.momentum, bn.affine, bn.track_running_stats)
    out.load_state_dict(bn.state_dict())
    return out


def _inflate_tree(module: nn.Module, kernel_of: Callable[[str], int], prefix: str = "") -> None:
    """Replace 2-D convs / norms / pools in place (recursively); ``kernel_of(name)`` = temporal kernel."""
    for name, child in list(module.named_children()):
        full = f"{prefix}{name}"
        if isinstance(child, nn.Conv2d):
            setattr(module, name, _inflate_conv(child, kernel_of(full)))
        elif isinstance(child, nn.BatchNorm2d):
            setattr(module, name, _inflate_bn(child))
        elif isinstance(child, nn.MaxPool2d):
            k, s, p = (child.kernel_size, child.stride, child.padding)
            setattr(module, name, nn.MaxPool3d((1, k, k) if isinstance(k, int) else (1, *k),
                                               (1, s, s) if isinstance(s, int) else (1, *s),
                                               (0, p, p) if isinstance(p, int) else (0, *p)))
        elif isinstance(child, nn.AdaptiveAvgPool2d):
            setattr(module, name, nn.AdaptiveAvgPool3d(1))
        else:
            _inflate_tree(child, kernel_of, f"{full}.")


def i3d_r50_kernels(name: str) -> int:
    """SlowFast I3D-R50 temporal kernel for a ResNet-50 conv ``name`` (e.g. ``layer2.0.conv1``)."""
    if name == "conv1":
        return 5
    parts = name.split(".")
    if len(parts) == 3 and parts[0].startswith("layer") and parts[2] == "conv1":
        layer, block = int(parts[0][5:]), int(parts[1])
        if layer == 1:
            return 3
        if layer in (2, 3):
            return 3 if block % 2 == 0 else 1
        return 3 if block % 2 == 1 else 1
    return 1


def inflate_resnet(resnet2d: nn.Module, kernel_of: Callable[[str], int] = i3d_r50_kernels,
                   temporal_pool: bool = True) -> nn.Module:
    """A 3-D copy of a torchvision 2-D ResNet (input (B, C, T, H, W)); the 2-D model is left untouched.

    Args:
        resnet2d: e.g. ``torchvision.models.resnet50(weights=None)`` (optionally with loaded weights).
        kernel_of: qualified conv name → temporal kernel size (odd).
        temporal_pool: max-pool time by 2 after ``layer1`` (I3D's pool after res2).
    """
    net = copy.deepcopy(resnet2d)
    _inflate_tree(net, kernel_of)
    if temporal_pool:
        net.layer1 = nn.Sequential(net.layer1, nn.MaxPool3d((2, 1, 1), (2, 1, 1)))
    return net


def _replace_first_conv(stem: nn.Module, in_chans: int) -> None:
    for name, child in stem.named_children():
        if isinstance(child, (nn.Conv3d, nn.Conv2d)):
            cls = type(child)
            setattr(stem, name, cls(in_chans, child.out_channels, child.kernel_size, child.stride, child.padding,
                                    bias=child.bias is not None))
            return
    raise ValueError("no convolution found in the stem")


class Video3DClassifier(nn.Module):
    """A 3-D CNN mapping clips (B, T, C, H, W) to class logits (B, K).

    Args:
        arch: one of :data:`ARCHS`.
        num_classes: K; 1 = one binary logit (risk score = sigmoid).
        in_chans: image channels (1 for grayscale ultrasound).
        dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing (K > 1).
        resnet2d: for ``"i3d_r50"`` only, a 2-D ResNet-50 to inflate (e.g. with locally loaded
            weights); default a randomly initialised torchvision ``resnet50``.
    """

    task = "video_classification"

    def __init__(self, arch: str = "i3d_r50", num_classes: int = 2, in_chans: int = 1, dropout: float = 0.0,
                 label_smoothing: float = 0.0, resnet2d: nn.Module | None = None) -> None:
        super().__init__()
        import torchvision

        if arch not in ARCHS:
            raise ValueError(f"unknown 3D clip model {arch!r}; choose from {list(ARCHS)}")
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.arch, self.num_classes, self.label_smoothing = arch, num_classes, label_smoothing
        if arch == "i3d_r50":
            net = inflate_resnet(resnet2d if resnet2d is not None else torchvision.models.resnet50(weights=None))
            w = net.conv1.weight  # (64, 3, kt, 7, 7): average the RGB filters for a gray stem
            conv1 = nn.Conv3d(in_chans, w.shape[0], w.shape[2:], net.conv1.stride, net.conv1.padding, bias=False)
            with torch.no_grad():
                conv1.weight.copy_(w.mean(dim=1, keepdim=True).expand(-1, in_chans, -1, -1, -1) * (3 / in_chans))
            net.conv1 = conv1
        else:
            net = getattr(torchvision.models.video, arch)(weights=None)
            _replace_first_conv(net.stem, in_chans)
        net.fc = nn.Sequential(nn.Dropout(dropout), nn.Linear(net.fc.in_features, num_classes))
        self.net = net

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B, K) for clips (B, T, C, H, W)."""
        if clips.ndim != 5:
            raise ValueError(f"3D clip models expect clips (B, T, C, H, W), got {tuple(clips.shape)}")
        return {"logits": self.net(clips.transpose(1, 2))}  # (B, C, T, H, W) in

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Cross-entropy (BCE for K = 1) on clip labels; logs accuracy."""
        require_keys(targets, ["label"], "video_classification")
        return classification_loss(outputs["logits"], targets["label"], self.label_smoothing)

    @torch.no_grad()
    def predict(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        """Metric-ready clip ``probs`` (B, K) and ``label`` (B,) for clips (B, T, C, H, W)."""
        logits = self.forward(clips)["logits"].float()
        label = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(dim=-1)
        return {"probs": class_probabilities(logits), "label": label}


class Video3DHead(nn.Module):
    """:class:`Video3DClassifier` in the head contract, for a model without an image backbone.

    ``uses_backbone = False``: :class:`~echocare.models.heads.FinetuneModel` is built with
    ``backbone=None`` and calls ``head(None, clips)``. ``feature_info`` is accepted and ignored.

    Args:
        feature_info: ignored (None when there is no backbone).
        num_classes: K.
        clip_model: one of :data:`ARCHS`.
        in_chans: image channels.
        dropout: dropout before the classifier.
        label_smoothing: cross-entropy label smoothing.
    """

    task = "video_classification"
    uses_backbone = False

    def __init__(self, feature_info: Any = None, num_classes: int = 2, clip_model: str = "i3d_r50",
                 in_chans: int = 1, dropout: float = 0.0, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.clip_model = clip_model
        self.net = Video3DClassifier(clip_model, num_classes, in_chans, dropout, label_smoothing)

    def forward(self, features: Any, image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Logits (B, K) of clips (B, T, C, H, W); ``features`` is ignored."""
        return self.net(image)

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Clip cross-entropy (see :meth:`Video3DClassifier.loss`)."""
        return self.net.loss(outputs, targets)

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Metric-ready clip ``probs`` (B, K) and ``label`` (B,)."""
        logits = outputs["logits"].float()
        label = (logits[:, 0] > 0).long() if logits.shape[-1] == 1 else logits.argmax(dim=-1)
        return {"probs": class_probabilities(logits), "label": label}
