"""Box helpers for detection: ellipse annotations → axis-aligned boxes.

Pure tensor functions without model state, so annotation converters can use
them directly. Boxes are ``(x1, y1, x2, y2)`` in continuous input-pixel
coordinates (pixel ``k`` covers ``[k, k + 1)``).
"""

from __future__ import annotations

import math

import torch


def ellipse_to_box(
    cx: float | torch.Tensor,
    cy: float | torch.Tensor,
    a: float | torch.Tensor,
    b: float | torch.Tensor,
    angle: float | torch.Tensor,
    degrees: bool = True,
) -> torch.Tensor:
    """Tight axis-aligned box around a rotated ellipse.

    The ellipse has centre ``(cx, cy)``, semi-axes ``a`` (along its own x axis)
    and ``b`` (along its own y axis), rotated by ``angle``. The half-extents of
    the tight box are ``sqrt(a² cos²θ + b² sin²θ)`` horizontally and
    ``sqrt(a² sin²θ + b² cos²θ)`` vertically; they do not depend on the sign of
    θ, so clockwise and counter-clockwise conventions give the same box.
    Annotations storing full axis lengths (OpenCV ``fitEllipse`` style) must be
    halved first.

    Args:
        cx, cy: centre (scalars or tensors of a common broadcast shape ``S``).
        a, b: semi-axes, non-negative.
        angle: rotation angle, degrees by default.
        degrees: ``False`` when ``angle`` is in radians.

    Returns:
        float tensor of shape ``S + (4,)``: ``(x1, y1, x2, y2)``.

    Raises:
        ValueError: a negative or non-finite semi-axis.
    """
    cx, cy, a, b, angle = (torch.as_tensor(v, dtype=torch.float64) for v in (cx, cy, a, b, angle))
    if bool((a < 0).any()) or bool((b < 0).any()) or not bool(torch.isfinite(a).all() & torch.isfinite(b).all()):
        raise ValueError(f"ellipse semi-axes must be finite and >= 0, got a={a.tolist()}, b={b.tolist()}")
    theta = angle * (math.pi / 180.0) if degrees else angle
    cos, sin = torch.cos(theta), torch.sin(theta)
    half_w = torch.sqrt((a * cos) ** 2 + (b * sin) ** 2)
    half_h = torch.sqrt((a * sin) ** 2 + (b * cos) ** 2)
    box = torch.stack(torch.broadcast_tensors(cx - half_w, cy - half_h, cx + half_w, cy + half_h), dim=-1)
    return box.float()


def validate_boxes(boxes: torch.Tensor, labels: torch.Tensor, num_classes: int, where: str) -> None:
    """Check one image's boxes (n, 4) xyxy and labels (n,).

    Raises:
        ValueError: naming ``where`` (e.g. ``"targets[3]"``) for wrong shapes, inverted
            or non-finite boxes, or labels outside ``[0, num_classes)``.
    """
    if boxes.ndim != 2 or boxes.shape[-1] != 4:
        raise ValueError(f"{where}: boxes should be (n, 4) x1,y1,x2,y2, got {tuple(boxes.shape)}")
    if labels.shape != boxes.shape[:1]:
        raise ValueError(f"{where}: labels should be ({boxes.shape[0]},), got {tuple(labels.shape)}")
    if boxes.numel() == 0:
        return
    if not bool(torch.isfinite(boxes).all()):
        raise ValueError(f"{where}: non-finite box coordinates")
    bad = (boxes[:, 2] <= boxes[:, 0]) | (boxes[:, 3] <= boxes[:, 1])
    if bool(bad.any()):
        raise ValueError(f"{where}: boxes with x2<=x1 or y2<=y1: {boxes[bad].tolist()}")
    if int(labels.min()) < 0 or int(labels.max()) >= num_classes:
        raise ValueError(f"{where}: labels must be in [0, {num_classes}), got {labels.tolist()}")
