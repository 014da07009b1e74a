"""Configuration of ``echocare finetune`` / ``evaluate`` / ``protocol``.

Reuses the shared :class:`~echocare.config.schema.TrainConfig` and
:class:`~echocare.config.schema.OptimConfig` sections with fine-tuning defaults (short schedules,
no lr scaling, layer-wise lr decay), and adds ``model``, ``data`` and ``eval`` sections. Loaded with
:func:`echocare.config.load_config` like every other config.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from collections.abc import Sequence
from typing import Literal, Optional

from echocare.config.errors import ConfigError
from echocare.config.schema import OptimConfig, TrainConfig, _f, check_architecture_fields


@dataclass
class FinetuneModelConfig:
    """Backbone initialisation and task head."""

    init: str = _f("random", "Encoder weights: an echocare export (.safetensors), a stock timm Swin "
                             "checkpoint (.safetensors/.pth), or 'random' for a from-scratch baseline.")
    name: str = _f("echocare_swin_base", "Encoder architecture when model.init=random (see list_models()).")
    embed_dim: Optional[int] = _f(None, "Stage-0 width when model.init=random; null = the named model's value "
                                        "(with a pretrained init: null, or it must match the file).")
    depths: Optional[list[int]] = _f(None, "Blocks per stage when model.init=random; null = the named model's value.")
    num_heads: Optional[list[int]] = _f(None, "Heads per stage when model.init=random; null = the named model's value.")
    img_size: int = _f(256, "Input side in pixels; images are resized to img_size x img_size.")
    patch_size: int = _f(4, "Patch size when model.init=random.")
    window_size: int = _f(8, "Window size when model.init=random.")
    drop_path_rate: float = _f(0.1, "Stochastic depth of the encoder during fine-tuning.")
    linear_probe: bool = _f(False, "Freeze the encoder and train the head only.")
    layer_decay: float = _f(0.75, "Layer-wise lr decay through the encoder's group_matcher (1 disables).")
    feature_norm: bool = _f(True, "Apply the encoder's final norm to the deepest feature map.")
    head: dict = _f({}, "Extra head arguments, e.g. {dropout: 0.1} or {feature_size: 32} (see echocare.models.heads).")
    head_init: Literal["random", "decoder"] = _f(
        "random", "Head weights: 'random', or 'decoder' = start the segmentation / enhancement head from the "
        "pretraining decoder in model.init (a --full export of a run pretrained with model.decoder=unetr and "
        "model.decoder_dim equal to the head's feature_size).")

    def validate(self) -> None:
        """Check value ranges."""
        if self.img_size <= 0 or self.img_size % 32:
            raise ConfigError(f"model.img_size must be a positive multiple of 32, got {self.img_size}")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ConfigError(f"model.layer_decay must be in (0, 1], got {self.layer_decay}")
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.head_init == "decoder" and self.init == "random":
            raise ConfigError("model.head_init=decoder takes the decoder from model.init; set model.init to a --full "
                              "export of a run pretrained with model.decoder=unetr")
        check_architecture_fields(self)


@dataclass
class FinetuneDataConfig:
    """Labeled data: where it is, its format options, and the split."""

    root: str = _f("", "Dataset root (folder, or the CSV file itself) - required.")
    val_root: Optional[str] = _f(None, "Explicit validation set (same format); disables the random split.")
    csv: Optional[str] = _f(None, "CSV file (relative to data.root) for CSV formats; default ROOT/labels.csv.")
    annotations: Optional[str] = _f(None, "COCO JSON for detection; default ROOT/annotations.json.")
    images_dir: str = _f("images", "Image sub-folder (segmentation; also searched for CSV/COCO file names).")
    masks_dir: str = _f("masks", "Mask sub-folder (segmentation); masks share the image's stem.")
    path_column: Optional[str] = _f(None, "CSV column with the file path; default image|video|path|file.")
    label_column: str = _f("label", "CSV column with the class label (classification/video).")
    group_column: Optional[str] = _f(None, "CSV column with the split group; default group|patient|video|case.")
    value_columns: list[str] = _f([], "CSV value columns (landmarks x1,y1,...; regression value); [] = all others.")
    exclude: list[str] = _f([], "Globs of files class folders leave out (the manifests' globs, relative to "
                                "data.root; one without '/' matches file names), e.g. ['*_mask*'] where masks sit "
                                "next to the images (BUSI).")
    group_regex: Optional[str] = _f(None, "Regex on the relative path giving the split group (first capture group), "
                                          "e.g. '^[^/]+/(patient\\d+)_'.")
    classes: list[str] = _f([], "Class names in label order; [] = sorted folder/CSV labels (segmentation: names "
                                "of mask values 0..K-1).")
    num_classes: Optional[int] = _f(None, "Segmentation classes incl. background; null = max mask value + 1.")
    positive_class: Optional[str] = _f(None, "Binary classification/video: the class scored as positive (index 1: "
                                             "AUC, F1, sensitivity); null = the second class in label order (logged).")
    val_fraction: float = _f(0.2, "Fraction of groups held out for validation.")
    fold: Optional[int] = _f(None, "k-fold: validate on this fold (0-based) instead of the hold-out split.")
    num_folds: int = _f(5, "Number of folds when data.fold is set.")
    split_seed: int = _f(0, "Seed of the split (kept fixed across protocol seeds).")
    train_fraction: float = _f(1.0, "Fraction of the training labels used (label efficiency, whole groups).")
    augment: bool = _f(True, "Training augmentation: label-safe horizontal flip + weak intensity jitter.")
    hflip: float = _f(0.5, "Horizontal flip probability (ignored for landmarks).")
    intensity: float = _f(0.1, "Max relative brightness/contrast jitter.")
    rotate: float = _f(0.0, "Max random rotation in degrees (segmentation, classification, video: the tasks where it "
                            "keeps the labels valid; the mask turns with the image). 0 = none.")
    scale: list[float] = _f([1.0, 1.0], "Random zoom range [lo, hi] (> 1 enlarges the content; same tasks). "
                                        "[1, 1] = none.")
    translate: float = _f(0.0, "Max random shift as a fraction of the side (same tasks). 0 = none.")
    clip_len: int = _f(8, "Frames per clip (video; temporal regression samples this many frames uniformly).")
    clip_stride: Optional[int] = _f(None, "Frames between clip starts; null = clip_len (adjacent clips).")
    num_workers: int = _f(2, "DataLoader worker processes.")
    verify: bool = _f(True, "Check every file before training (corrupt ones are reported and skipped).")
    balanced: bool = _f(False, "Class-balanced sampling (classification, video): each epoch draws as many items "
                               "as the training split, with replacement, each class equally likely.")
    roi: Optional[str] = _f(None, "Video: region of interest cropped before resizing; null = whole frame, "
                                  "'scan_area' = the clip's scan-area box (WAUVE-style ROI stage).")

    def validate(self) -> None:
        """Check value ranges."""
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"data.val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 < self.train_fraction <= 1.0:
            raise ConfigError(f"data.train_fraction must be in (0, 1], got {self.train_fraction}")
        if self.num_folds < 2:
            raise ConfigError(f"data.num_folds must be >= 2, got {self.num_folds}")
        if self.fold is not None and not 0 <= self.fold < self.num_folds:
            raise ConfigError(f"data.fold must be in [0, {self.num_folds}), got {self.fold}")
        if self.clip_len < 1 or self.num_workers < 0:
            raise ConfigError("data.clip_len must be >= 1 and data.num_workers >= 0")
        if not 0.0 <= self.rotate <= 180.0 or not 0.0 <= self.translate <= 0.5:
            raise ConfigError(f"data.rotate must be in [0, 180] degrees and data.translate in [0, 0.5], got "
                              f"{self.rotate} and {self.translate}")
        if len(self.scale) != 2 or not 0.0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"data.scale must be [lo, hi] with 0 < lo <= hi, got {self.scale}")
        if any(not isinstance(g, str) or not g.strip() for g in self.exclude):
            raise ConfigError(f"data.exclude must be a list of non-empty globs, got {self.exclude}")
        if self.roi not in (None, "scan_area"):
            raise ConfigError(f"data.roi must be null or 'scan_area', got {self.roi!r}")


@dataclass
class EvalConfig:
    """Validation metrics."""

    batch_size: int = _f(16, "Evaluation batch size.")
    ci: bool = _f(True, "Bootstrap confidence intervals for classification metrics.")
    n_bootstrap: int = _f(1000, "Bootstrap resamples for the CIs.")
    nsd_tolerance: float = _f(2.0, "NSD boundary tolerance in pixels of the model input.")
    sdr_radii: list[float] = _f([2.0, 4.0, 10.0], "Landmark success-detection radii (original pixels).")
    select_metric: Optional[str] = _f(None, "Metric selecting the best checkpoint when train.eval_every > 0; "
                                            "null = the task's first headline metric (e.g. accuracy, mean_dice, mae).")
    niqe_params: Optional[str] = _f(None, "Enhancement: NIQE model file (.mat with mu_prisparam/cov_prisparam); "
                                          "null = fit NIQE's pristine MVG on the high-quality references.")
    brisque_weights: Optional[str] = _f(None, "Enhancement: BRISQUE SVR file (brisque_svm_weights.pt or "
                                              "brisque_matlab.mat); null = brisque is null.")
    inception_weights: Optional[str] = _f(None, "Enhancement: FID Inception-v3 weights (pytorch-fid's "
                                                "pt_inception-2015-12-05-*.pth); null = fid is null.")
    save_images: int = _f(64, "Enhancement: enhanced images written as PNG grids (input | output); 0 = none.")
    findings_terms: list[str] = _f([], "Report generation: findings terms; [] = the most frequent content terms of "
                                       "the training reports (eval.num_findings_terms of them).")
    num_findings_terms: int = _f(20, "Report generation: number of default findings terms.")
    wordnet_dir: Optional[str] = _f(None, "Report generation: local nltk WordNet folder for METEOR; null = "
                                          "meteor is null unless WordNet is in an nltk data path.")
    beam_size: int = _f(1, "Report generation: beam width of decoding (1 = greedy).")

    def validate(self) -> None:
        """Check value ranges."""
        if self.batch_size < 1 or self.n_bootstrap < 1:
            raise ConfigError("eval.batch_size and eval.n_bootstrap must be >= 1")
        if self.beam_size < 1 or self.num_findings_terms < 0 or self.save_images < 0:
            raise ConfigError("eval.beam_size must be >= 1, eval.num_findings_terms and eval.save_images >= 0")


@dataclass
class FinetuneTrainConfig(TrainConfig):
    """The shared training-loop section plus fine-tuning budgets in epochs and periodic validation."""

    max_steps: Optional[int] = _f(None, "Optimizer steps; null = from train.epochs, or 1000 when that is null too.")
    epochs: Optional[float] = _f(None, "Budget in passes over the training split (converted to steps from its "
                                       "size, batch size, processes and accumulation); with train.max_steps both "
                                       "must agree.")
    eval_every: int = _f(0, "Validate every N optimizer steps and keep the best weights (eval.select_metric) for "
                            "model.safetensors; 0 = only validate the final weights.")

    def validate(self) -> None:
        """Check value ranges."""
        super().validate()
        if self.epochs is not None and self.epochs <= 0:
            raise ConfigError(f"train.epochs must be > 0, got {self.epochs}")
        if self.eval_every < 0:
            raise ConfigError(f"train.eval_every must be >= 0, got {self.eval_every}")


def budget_overrides(overrides: Sequence[str]) -> list[str]:
    """``--set`` overrides where a budget given on the command line replaces the recipe's other budget.

    A recipe states its budget as ``train.epochs`` (or ``train.max_steps``); ``--set train.max_steps=N`` alone
    then means "N steps instead", so ``train.epochs=null`` is put before it (and the other way round). Giving
    both on the command line keeps both (they must agree).
    """
    keys = [o.split("=", 1)[0].strip() for o in overrides]
    budget = {"train.max_steps": "train.epochs", "train.epochs": "train.max_steps"}
    given = [k for k in budget if k in keys]
    if len(given) != 1:
        return list(overrides)
    return [f"{budget[given[0]]}=null", *overrides]


def _train_defaults() -> FinetuneTrainConfig:
    return FinetuneTrainConfig(max_steps=None, batch_size=16, ckpt_every=500, keep_last=1, log_every=10,
                               image_every=0)


def _optim_defaults() -> OptimConfig:
    return OptimConfig(lr=1e-4, scale_lr=False, weight_decay=0.05, warmup_steps=50, min_lr_ratio=0.01,
                       clip_grad=5.0)


@dataclass
class FinetuneConfig:
    """Configuration of ``echocare finetune``."""

    task: str = _f("classification", "Task name in the task registry: classification, segmentation, detection, "
                                     "landmarks, regression, video, enhancement, report_generation, or one added "
                                     "with register_task (checked when the job starts).")
    model: FinetuneModelConfig = field(default_factory=FinetuneModelConfig, metadata={"help": "Model."})
    data: FinetuneDataConfig = field(default_factory=FinetuneDataConfig, metadata={"help": "Data."})
    eval: EvalConfig = field(default_factory=EvalConfig, metadata={"help": "Evaluation."})
    optim: OptimConfig = field(default_factory=_optim_defaults, metadata={"help": "Optimizer."})
    train: FinetuneTrainConfig = field(default_factory=_train_defaults, metadata={"help": "Training loop."})

    def validate(self) -> None:
        """Cross-section checks."""
        if not self.data.root:
            raise ConfigError("data.root is required; set it in the YAML or with --set data.root=DIR")
