"""Anchor-free (FCOS-style) detector on one fused pyramid level.

Backbone levels with stride >= ``stride`` (default 8) are fused FPN-style into
one map at that stride. Every location predicts K class logits, 4 box distances
(left, top, right, bottom, in input pixels) and a centerness logit.

Assignment (per image): a location is positive for a box when it lies inside
the box and within ``center_radius * stride`` of the box centre on both axes;
the location whose cell contains the box centre is always positive, so small
boxes are never dropped. Overlaps go to the smallest box. Loss: sigmoid focal
(classes) + GIoU (boxes, weighted by centerness targets) + optional L1 on
normalised distances + BCE (centerness).
Decoding: score = sqrt(p_class * p_centerness), threshold, top-k, per-class NMS.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms

from echocare.losses.detection import centerness_loss, centerness_target, focal_loss, giou_loss
from echocare.models.heads.boxes import validate_boxes
from echocare.models.heads.common import ConvNormAct, FeatureFusion, check_features, parse_feature_info


def location_centers(height: int, width: int, stride: int, device: torch.device) -> torch.Tensor:
    """Input-pixel centres of a (height, width) map at ``stride``: (height*width, 2) as (x, y), row-major."""
    ys = (torch.arange(height, device=device, dtype=torch.float32) + 0.5) * stride
    xs = (torch.arange(width, device=device, dtype=torch.float32) + 0.5) * stride
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], dim=-1)


def ltrb_to_boxes(points: torch.Tensor, ltrb: torch.Tensor) -> torch.Tensor:
    """Distances (..., 4) from points (..., 2) → boxes (..., 4) x1, y1, x2, y2."""
    return torch.cat([points - ltrb[..., :2], points + ltrb[..., 2:]], dim=-1)


class DetectionHead(nn.Module):
    """FCOS-style anchor-free detection head.

    Args:
        feature_info: backbone feature description.
        num_classes: K object classes (no background class).
        stride: stride of the prediction map (finest fused level).
        channels: width of the fused map and of the tower.
        num_convs: shared conv tower depth.
        center_radius: centre-sampling radius in strides.
        focal_alpha, focal_gamma: focal loss parameters.
        giou_weight, l1_weight, centerness_weight: loss weights.
        score_thresh, nms_iou, pre_nms_topk, max_detections: decoding parameters.

    Forward: ``features``, ``image`` (B, C, H, W) → ``{"cls_logits": (B, P, K),
    "box_ltrb": (B, P, 4), "ctr_logits": (B, P), "points": (P, 2)}`` with P = h*w.
    Targets for :meth:`loss`: ``{"boxes": [ (n_i, 4) ], "labels": [ (n_i,) ]}``.
    """

    task = "detection"

    def __init__(
        self,
        feature_info: Any,
        num_classes: int,
        stride: int = 8,
        channels: int = 64,
        num_convs: int = 2,
        center_radius: float = 1.5,
        focal_alpha: float = 0.25,
        focal_gamma: float = 2.0,
        giou_weight: float = 1.0,
        l1_weight: float = 0.0,
        centerness_weight: float = 1.0,
        score_thresh: float = 0.05,
        nms_iou: float = 0.6,
        pre_nms_topk: int = 1000,
        max_detections: int = 100,
    ) -> None:
        super().__init__()
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.spec = parse_feature_info(feature_info)
        self.num_classes = num_classes
        self.fusion = FeatureFusion(self.spec, channels, min_reduction=stride, num_convs=1)
        self.stride = self.fusion.out_reduction
        self.tower = nn.Sequential(*[ConvNormAct(channels, channels) for _ in range(num_convs)])
        self.cls_out = nn.Conv2d(channels, num_classes, 3, padding=1)
        self.box_out = nn.Conv2d(channels, 4, 3, padding=1)
        self.ctr_out = nn.Conv2d(channels, 1, 3, padding=1)
        nn.init.normal_(self.cls_out.weight, std=0.01)
        nn.init.constant_(self.cls_out.bias, -math.log((1 - 0.01) / 0.01))  # prior p = 0.01
        self.center_radius = center_radius
        self.focal_alpha, self.focal_gamma = focal_alpha, focal_gamma
        self.giou_weight, self.l1_weight, self.centerness_weight = giou_weight, l1_weight, centerness_weight
        self.score_thresh, self.nms_iou = score_thresh, nms_iou
        self.pre_nms_topk, self.max_detections = pre_nms_topk, max_detections

    def forward(self, features: Sequence[torch.Tensor], image: torch.Tensor) -> dict[str, torch.Tensor]:
        """Dense predictions at every location of the stride-``self.stride`` map."""
        check_features(features, self.spec, (image.shape[-2], image.shape[-1]))
        x = self.tower(self.fusion(features))  # (B, D, h, w)
        b, _, h, w = x.shape
        cls = self.cls_out(x).flatten(2).transpose(1, 2)  # (B, P, K)
        ltrb = F.softplus(self.box_out(x)).flatten(2).transpose(1, 2) * self.stride  # (B, P, 4) pixels
        ctr = self.ctr_out(x).flatten(1)  # (B, P)
        points = location_centers(h, w, self.stride, x.device)  # (P, 2)
        return {"cls_logits": cls, "box_ltrb": ltrb, "ctr_logits": ctr, "points": points,
                "grid_size": torch.tensor([h, w]), "image_size": torch.tensor([image.shape[-2], image.shape[-1]])}

    @torch.no_grad()
    def assign(
        self, points: torch.Tensor, grid_hw: tuple[int, int], boxes: torch.Tensor, labels: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Assign locations to ground-truth boxes for one image.

        Args:
            points: (P, 2) location centres (x, y), row-major over the grid.
            grid_hw: (h, w) of the prediction map, P = h * w.
            boxes: (n, 4) boxes; labels: (n,) class ids.

        Returns:
            ``cls_target`` (P, K) one-hot, ``box_target`` (P, 4) xyxy, ``pos`` (P,) bool.
        """
        p = points.shape[0]
        cls_target = torch.zeros(p, self.num_classes, device=points.device)
        box_target = torch.zeros(p, 4, device=points.device)
        if boxes.shape[0] == 0:
            return cls_target, box_target, torch.zeros(p, dtype=torch.bool, device=points.device)
        px, py = points[:, 0:1], points[:, 1:2]  # (P, 1)
        x1, y1, x2, y2 = boxes.T  # each (n,)
        inside = (px > x1) & (px < x2) & (py > y1) & (py < y2)  # (P, n)
        cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
        r = self.center_radius * self.stride
        near = ((px - cx).abs() < r) & ((py - cy).abs() < r)  # (P, n)
        # the cell containing each box centre is always a candidate
        s = self.stride
        h_cells, w_cells = grid_hw
        col = (cx / s).floor().clamp(0, w_cells - 1).long()
        row = (cy / s).floor().clamp(0, h_cells - 1).long()
        center_cell = torch.zeros_like(inside)
        center_cell[row * w_cells + col, torch.arange(boxes.shape[0], device=points.device)] = True
        cand = (inside & near) | center_cell  # (P, n)
        area = ((x2 - x1) * (y2 - y1)).unsqueeze(0).expand(p, -1)  # (P, n)
        area = torch.where(cand, area, torch.full_like(area, float("inf")))
        best_area, best = area.min(dim=1)  # (P,)
        pos = torch.isfinite(best_area)
        cls_target[pos, labels[best[pos]].long()] = 1.0
        box_target[pos] = boxes[best[pos]].float()
        return cls_target, box_target, pos

    def loss(self, outputs: Mapping[str, torch.Tensor], targets: Mapping[str, Any]) -> dict[str, Any]:
        """Focal + GIoU (+ L1) + centerness losses over the batch."""
        if "boxes" not in targets or "labels" not in targets:
            raise KeyError(f"detection targets need 'boxes' and 'labels' lists; got keys {sorted(targets)}")
        cls_logits, ltrb, ctr_logits = outputs["cls_logits"], outputs["box_ltrb"], outputs["ctr_logits"]
        points = outputs["points"]
        b = cls_logits.shape[0]
        if len(targets["boxes"]) != b or len(targets["labels"]) != b:
            raise ValueError(f"detection targets hold {len(targets['boxes'])} box sets for a batch of {b}")
        grid_hw = (int(outputs["grid_size"][0]), int(outputs["grid_size"][1]))
        cls_t, box_t, pos_t = [], [], []
        for i in range(b):
            boxes = torch.as_tensor(targets["boxes"][i], dtype=torch.float32, device=points.device).reshape(-1, 4)
            labels = torch.as_tensor(targets["labels"][i], device=points.device).long().reshape(-1)
            validate_boxes(boxes, labels, self.num_classes, f"detection targets[{i}]")
            c, bx, ps = self.assign(points, grid_hw, boxes, labels)
            cls_t.append(c)
            box_t.append(bx)
            pos_t.append(ps)
        cls_target = torch.stack(cls_t)  # (B, P, K)
        box_target = torch.stack(box_t)  # (B, P, 4)
        pos = torch.stack(pos_t)  # (B, P)
        num_pos = pos.sum()
        loss_cls = focal_loss(cls_logits, cls_target, num_pos, self.focal_alpha, self.focal_gamma)
        pts = points.unsqueeze(0).expand(b, -1, -1)[pos]  # (M, 2)
        pred_boxes = ltrb_to_boxes(pts, ltrb[pos].float())  # (M, 4)
        gt_boxes = box_target[pos]  # (M, 4)
        gt_ltrb = torch.cat([pts - gt_boxes[:, :2], gt_boxes[:, 2:] - pts], dim=-1)  # (M, 4)
        ctr_t = centerness_target(gt_ltrb)  # (M,)
        loss_giou = giou_loss(pred_boxes, gt_boxes, ctr_t)
        loss_ctr = centerness_loss(ctr_logits[pos], ctr_t)
        if pos.any():
            loss_l1 = F.l1_loss(ltrb[pos].float() / self.stride, gt_ltrb.clamp(min=0) / self.stride)
        else:
            loss_l1 = ltrb.sum() * 0.0
        loss = loss_cls + self.giou_weight * loss_giou + self.centerness_weight * loss_ctr
        if self.l1_weight:
            loss = loss + self.l1_weight * loss_l1
        logs = {"loss_cls": loss_cls.detach(), "loss_giou": loss_giou.detach(), "loss_ctr": loss_ctr.detach(),
                "loss_l1": loss_l1.detach(), "num_pos": num_pos.float() / b}
        return {"loss": loss, "logs": logs}

    @torch.no_grad()
    def predict(self, outputs: Mapping[str, torch.Tensor]) -> list[dict[str, torch.Tensor]]:
        """Decode to per-image ``{"boxes": (n, 4), "scores": (n,), "labels": (n,)}`` after NMS."""
        cls_p = torch.sigmoid(outputs["cls_logits"].float())  # (B, P, K)
        ctr_p = torch.sigmoid(outputs["ctr_logits"].float())  # (B, P)
        scores_all = torch.sqrt(cls_p * ctr_p.unsqueeze(-1))  # (B, P, K)
        boxes_all = ltrb_to_boxes(outputs["points"], outputs["box_ltrb"].float())  # (B, P, 4)
        h, w = (int(v) for v in outputs["image_size"])
        results = []
        for scores, boxes in zip(scores_all, boxes_all):
            flat = scores.flatten()  # (P*K,)
            keep = torch.nonzero(flat > self.score_thresh).squeeze(1)
            if keep.numel() > self.pre_nms_topk:
                keep = keep[flat[keep].topk(self.pre_nms_topk).indices]
            loc, lab = keep // self.num_classes, keep % self.num_classes
            bx = boxes[loc].clone()
            bx[:, 0::2] = bx[:, 0::2].clamp(0, w)
            bx[:, 1::2] = bx[:, 1::2].clamp(0, h)
            sc = flat[keep]
            kept = batched_nms(bx, sc, lab, self.nms_iou)[: self.max_detections]
            results.append({"boxes": bx[kept], "scores": sc[kept], "labels": lab[kept]})
        return results
