"""Gaussian heatmap targets and sub-pixel heatmap decoding for landmarks.

Coordinate convention: landmarks are ``(x, y)`` in input-pixel index
coordinates (the centre of pixel column ``c``, row ``r`` is ``(c, r)``). A
heatmap at stride ``s`` has cell ``u`` covering input pixels
``[u*s, (u+1)*s)``, whose centre is ``u*s + (s-1)/2``; so
``x = u*s + (s-1)/2`` and ``u = (x - (s-1)/2) / s``.
"""

from __future__ import annotations

import torch


def to_heatmap_coords(points: torch.Tensor, stride: int) -> torch.Tensor:
    """Input-pixel (x, y) → heatmap (u, v) coordinates. Shape preserved."""
    return (points - (stride - 1) / 2.0) / stride


def to_image_coords(points: torch.Tensor, stride: int) -> torch.Tensor:
    """Heatmap (u, v) → input-pixel (x, y) coordinates. Shape preserved."""
    return points * stride + (stride - 1) / 2.0


def render_gaussian_heatmaps(
    points: torch.Tensor, heatmap_hw: tuple[int, int], stride: int, sigma: float
) -> torch.Tensor:
    """Unnormalised Gaussians (peak 1 at the exact, sub-pixel landmark position).

    Args:
        points: (B, L, 2) landmark (x, y) in input pixels.
        heatmap_hw: (h, w) of the heatmap.
        stride: input pixels per heatmap cell.
        sigma: Gaussian standard deviation in heatmap cells.

    Returns:
        (B, L, h, w) float32 heatmaps.
    """
    if points.ndim != 3 or points.shape[-1] != 2:
        raise ValueError(f"points should be (B, L, 2) (x, y), got {tuple(points.shape)}")
    h, w = heatmap_hw
    uv = to_heatmap_coords(points.float(), stride)  # (B, L, 2)
    us = torch.arange(w, device=points.device, dtype=torch.float32)  # (w,)
    vs = torch.arange(h, device=points.device, dtype=torch.float32)  # (h,)
    gx = torch.exp(-((us - uv[..., 0:1]) ** 2) / (2 * sigma**2))  # (B, L, w)
    gy = torch.exp(-((vs - uv[..., 1:2]) ** 2) / (2 * sigma**2))  # (B, L, h)
    return gy.unsqueeze(-1) * gx.unsqueeze(-2)  # (B, L, h, w)


def _taylor_offsets(heatmaps: torch.Tensor, row: torch.Tensor, col: torch.Tensor) -> torch.Tensor:
    """Second-order Taylor refinement of the log-heatmap around (row, col).

    ``offset = -H⁻¹ g`` with central differences; exact for Gaussian peaks
    (whose logarithm is quadratic). Locations on the border, or where the
    Hessian is not negative definite, keep offset 0 on the affected axes.
    Returns (N, 2) offsets (du, dv) clamped to [-1, 1].
    """
    n, h, w = heatmaps.shape
    logh = torch.log(heatmaps.clamp(min=1e-10))  # (N, h, w)
    idx = torch.arange(n, device=heatmaps.device)
    r0, c0 = row.clamp(1, max(h - 2, 1)), col.clamp(1, max(w - 2, 1))

    def at(dr: int, dc: int) -> torch.Tensor:
        return logh[idx, (r0 + dr).clamp(0, h - 1), (c0 + dc).clamp(0, w - 1)]

    center = at(0, 0)
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2 * center + at(0, -1)
    hyy = at(1, 0) - 2 * center + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok2d = (hxx < 0) & (det > 0)
    safe_det = torch.where(ok2d, det, torch.ones_like(det))
    du = torch.where(ok2d, -(hyy * gx - hxy * gy) / safe_det, torch.zeros_like(det))
    dv = torch.where(ok2d, -(hxx * gy - hxy * gx) / safe_det, torch.zeros_like(det))
    inner_x = (col >= 1) & (col <= w - 2)
    inner_y = (row >= 1) & (row <= h - 2)
    du = torch.where(inner_x & inner_y, du, torch.zeros_like(du))
    dv = torch.where(inner_x & inner_y, dv, torch.zeros_like(dv))
    return torch.stack([du, dv], dim=-1).clamp(-1.0, 1.0)


def _centroid(heatmaps: torch.Tensor, row: torch.Tensor, col: torch.Tensor, radius: int) -> torch.Tensor:
    """Centroid of ``relu(heatmap)`` in a (2r+1)² window around (row, col): (N, 2) as (u, v)."""
    n, h, w = heatmaps.shape
    offs = torch.arange(-radius, radius + 1, device=heatmaps.device)
    rows = row[:, None] + offs  # (N, k)
    cols = col[:, None] + offs  # (N, k)
    valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (N, k, k)
    idx = torch.arange(n, device=heatmaps.device)[:, None, None]
    win = heatmaps[idx, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]  # (N, k, k)
    weight = win.clamp(min=0) * valid
    total = weight.sum(dim=(1, 2)).clamp(min=1e-12)  # (N,)
    u = (weight * cols[:, None, :].float()).sum(dim=(1, 2)) / total
    v = (weight * rows[:, :, None].float()).sum(dim=(1, 2)) / total
    fallback = weight.sum(dim=(1, 2)) <= 0
    u = torch.where(fallback, col.float(), u)
    v = torch.where(fallback, row.float(), v)
    return torch.stack([u, v], dim=-1)


def decode_heatmaps(
    heatmaps: torch.Tensor, stride: int, method: str = "taylor", radius: int = 3
) -> tuple[torch.Tensor, torch.Tensor]:
    """Sub-pixel landmark positions from heatmaps.

    Args:
        heatmaps: (B, L, h, w) scores (peak near 1 for trained Gaussian heatmaps).
        stride: input pixels per heatmap cell.
        method: ``"taylor"`` (argmax + log-domain Newton step, DARK-style),
            ``"centroid"`` (local soft-argmax: centroid of the non-negative heatmap in a
            ``(2*radius+1)²`` window around the argmax) or ``"argmax"`` (integer cells).
        radius: centroid window radius in cells.

    Returns:
        ``points`` (B, L, 2) (x, y) in input pixels, and ``scores`` (B, L) heatmap maxima.

    Raises:
        ValueError: unknown method or wrong shape.
    """
    if heatmaps.ndim != 4:
        raise ValueError(f"heatmaps should be (B, L, h, w), got {tuple(heatmaps.shape)}")
    b, l, h, w = heatmaps.shape
    flat = heatmaps.float().reshape(b * l, h * w)  # (N, h*w)
    scores, arg = flat.max(dim=1)  # (N,)
    row, col = arg // w, arg % w
    maps = heatmaps.float().reshape(b * l, h, w)
    if method == "centroid":
        uv = _centroid(maps, row, col, radius)  # (N, 2)
    elif method in ("taylor", "argmax"):
        uv = torch.stack([col, row], dim=-1).float()  # (N, 2)
        if method == "taylor":
            uv = uv + _taylor_offsets(maps, row, col)
    else:
        raise ValueError(f"unknown heatmap decoding method {method!r}; use 'taylor', 'centroid' or 'argmax'")
    points = to_image_coords(uv, stride).reshape(b, l, 2)
    return points, scores.reshape(b, l)
