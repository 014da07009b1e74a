"""Evaluation metrics of the EchoCare report (seed 003 §4.3-4.4).

Numpy arrays, torch tensors or sequences in; python floats and dicts out. One module per task family:
``classification`` (ACC, precision, recall/sensitivity, specificity, F1, AUC, Youden), ``bootstrap``
(percentile CIs), ``segmentation`` (DSC, NSD via MONAI), ``detection`` (box AP, CTR precision),
``landmarks`` (MSE, MRE, SDR), ``regression`` (MAE, RMSE, R², Pearson r) and ``summary`` (mean ± std
over runs, t-tests, label-efficiency tables and plots). See docs/metrics.md.
"""

from echocare.metrics.bootstrap import bootstrap_ci
from echocare.metrics.classification import (
    accuracy,
    binary_auc,
    classification_report,
    confusion_matrix,
    f1_score,
    precision,
    recall,
    roc_auc,
    sensitivity,
    specificity,
    youden_threshold,
)
from echocare.metrics.detection import (
    average_precision,
    box_iou,
    cardiothoracic_ratio,
    ctr_precision,
    ctr_report,
    detection_report,
)
from echocare.metrics.landmarks import (
    landmark_mse,
    landmark_report,
    mean_radial_error,
    success_detection_rate,
)
from echocare.metrics.regression import mae, pearson_r, r2_score, regression_report, rmse
from echocare.metrics.segmentation import dice_per_class, nsd_per_class, segmentation_report
from echocare.metrics.summary import (
    compare_to_best,
    comparison_table,
    flatten_metrics,
    format_mean_std,
    label_efficiency_table,
    mean_std,
    plot_label_efficiency,
    significance_stars,
    summarize_runs,
    ttest_pvalue,
)

__all__ = [
    "accuracy",
    "average_precision",
    "binary_auc",
    "bootstrap_ci",
    "box_iou",
    "cardiothoracic_ratio",
    "classification_report",
    "compare_to_best",
    "comparison_table",
    "confusion_matrix",
    "ctr_precision",
    "ctr_report",
    "detection_report",
    "dice_per_class",
    "f1_score",
    "flatten_metrics",
    "format_mean_std",
    "label_efficiency_table",
    "landmark_mse",
    "landmark_report",
    "mae",
    "mean_radial_error",
    "mean_std",
    "nsd_per_class",
    "pearson_r",
    "plot_label_efficiency",
    "precision",
    "r2_score",
    "recall",
    "regression_report",
    "rmse",
    "roc_auc",
    "segmentation_report",
    "sensitivity",
    "significance_stars",
    "specificity",
    "success_detection_rate",
    "summarize_runs",
    "ttest_pvalue",
    "youden_threshold",
]
