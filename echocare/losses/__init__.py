"""Loss primitives: tensors in, scalar tensor out. No model or config imports.

``masked_l1_loss`` is eq. (1) of the EchoCare report, ``hierarchical_loss`` eq. (2)-(3). Task losses for
fine-tuning live in their own modules (``echocare.losses.segmentation``, ``echocare.losses.detection``).
"""

from echocare.losses.hierarchical import ancestor_min, descendant_min, hierarchical_loss, hierarchy_log_probs
from echocare.losses.detection import centerness_loss, centerness_target, focal_loss, giou_loss
from echocare.losses.landmarks import heatmap_mse_loss
from echocare.losses.masked_l1 import masked_l1_loss
from echocare.losses.patch_norm import patch_mean_std
from echocare.losses.segmentation import dice_ce_loss

__all__ = [
    "ancestor_min",
    "centerness_loss",
    "centerness_target",
    "descendant_min",
    "dice_ce_loss",
    "focal_loss",
    "giou_loss",
    "heatmap_mse_loss",
    "hierarchical_loss",
    "hierarchy_log_probs",
    "masked_l1_loss",
    "patch_mean_std",
]
