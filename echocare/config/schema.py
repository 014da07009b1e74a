"""Typed configuration sections for training runs.

Every field carries its documentation in ``metadata={"help": ...}``; the
loader renders it in ``echocare pretrain --help-config`` and in
docs/pretraining.md. Defaults follow the EchoCare report's pretraining
protocol (seed 003, §4): AdamW, peak lr 1e-4 at batch 256, cosine decay,
10k warmup steps, weight decay 0.05, stochastic depth 0.1, 256² inputs,
one million steps, 50 % masking.

:class:`TrainConfig` and :class:`OptimConfig` are shared with fine-tuning:
a fine-tuning config dataclass embeds them as its ``train`` / ``optim``
sections and reuses :func:`echocare.config.load_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional

from echocare.config.errors import ConfigError


def _f(default, help: str, **kw):  # noqa: A002 - "help" mirrors argparse
    """A dataclass field with a help string (lists get a default_factory)."""
    if isinstance(default, (list, dict)):
        value = default
        return field(default_factory=lambda: type(value)(value), metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class ModelConfig:
    """Pretraining model (encoder + decoders + hierarchical classifier)."""

    name: str = _f("echocare_swin_base", "Registered model name (see echocare.list_models()).")
    embed_dim: Optional[int] = _f(None, "Stage-0 width (doubled per stage); null = the named model's value.")
    depths: Optional[list[int]] = _f(None, "Blocks per stage, e.g. [2, 2, 6, 2]; null = the named model's value.")
    num_heads: Optional[list[int]] = _f(None, "Attention heads per stage; null = the named model's value.")
    img_size: int = _f(256, "Input image side in pixels (images are square crops).")
    patch_size: int = _f(4, "Swin patch-embedding size in pixels (mask token granularity).")
    window_size: int = _f(8, "Swin attention window size in tokens.")
    in_chans: int = _f(1, "Input channels (1 = grayscale ultrasound).")
    decoder: Literal["simmim", "progressive", "unetr"] = _f(
        "simmim", "Image decoder for reconstruction; 'unetr' = the segmentation head's decoder, so a fine-tune "
        "can start its head from it (finetune model.head_init=decoder)."
    )
    decoder_dim: Optional[int] = _f(
        None, "Width of the progressive / unetr decoder at full resolution; null = min(48, embed_dim). For "
        "model.head_init=decoder it must equal the head's feature_size."
    )
    decoder_output: Literal["sigmoid", "linear"] = _f(
        "linear", "Reconstruction output: 'linear' = raw, as SimMIM's head; 'sigmoid' = squashed into [0, 1] (kept "
        "small pools and deeper encoders on the mean-image plateau; docs/pretraining.md)."
    )
    target_norm_patch: int = _f(
        0, "0 = reconstruct raw pixels (eq. 1); k >= 2 = reconstruct each k x k block normalised by its own "
        "mean and std (MAE's norm_pix_loss; needs decoder_output=linear and k dividing img_size)."
    )
    weight_init: Literal["normal", "timm"] = _f(
        "normal", "Initialisation of a fresh model: 'normal' = patch embedding and SimMIM head N(0, 0.02) with "
        "zero bias, relative-position tables and mask token zero (HF's SwinForMaskedImageModeling); 'timm' = "
        "timm's Swin and PyTorch's conv defaults (original SimMIM; docs/results.md tables 1-11)."
    )
    hie_weight: float = _f(1.0, "Weight of the hierarchical anatomy loss (0 disables it).")
    hie_min_labels: int = _f(
        2, "Train L_HIE only when the shards' index.json lists at least this many distinct label paths: with "
        "fewer, every labeled image has the same target, which teaches the encoder nothing (the run is MIM only, "
        "logged). 1 = always train it; shards without an index always train it."
    )
    drop_path_rate: float = _f(0.1, "Stochastic-depth rate of the encoder.")
    ontology: Optional[str] = _f(None, "Ontology YAML path; null = packaged EchoAtlas ontology.")

    def validate(self) -> None:
        """Check value ranges."""
        if self.img_size <= 0 or self.patch_size <= 0 or self.img_size % self.patch_size:
            raise ConfigError(
                f"model.img_size ({self.img_size}) must be a positive multiple of "
                f"model.patch_size ({self.patch_size})"
            )
        if not 0.0 <= self.drop_path_rate < 1.0:
            raise ConfigError(f"model.drop_path_rate must be in [0, 1), got {self.drop_path_rate}")
        if self.hie_weight < 0:
            raise ConfigError(f"model.hie_weight must be >= 0, got {self.hie_weight}")
        if self.hie_min_labels < 1:
            raise ConfigError(f"model.hie_min_labels must be >= 1, got {self.hie_min_labels}")
        if self.decoder_dim is not None and self.decoder_dim < 1:
            raise ConfigError(f"model.decoder_dim must be null or a positive width, got {self.decoder_dim}")
        if self.decoder_dim is not None and self.decoder == "simmim":
            raise ConfigError("model.decoder_dim sets the progressive / unetr decoder's width; the simmim decoder "
                              "has none (leave it null)")
        if self.target_norm_patch:
            if self.target_norm_patch < 2 or self.img_size % self.target_norm_patch:
                raise ConfigError(
                    f"model.target_norm_patch must be 0 or a block side >= 2 dividing model.img_size "
                    f"({self.img_size}), got {self.target_norm_patch}"
                )
            if self.decoder_output != "linear":
                raise ConfigError("model.target_norm_patch needs model.decoder_output=linear "
                                  "(normalised targets are not in [0, 1])")
        check_architecture_fields(self)


def check_architecture_fields(model: object) -> None:
    """Validate the optional ``embed_dim`` / ``depths`` / ``num_heads`` of a model section.

    Checks what is given: positive values, equal lengths of ``depths`` and ``num_heads``, and (when
    ``embed_dim`` and ``num_heads`` are both set) every stage width ``embed_dim * 2**i`` divisible by its
    heads. Combinations with the named model's values are checked again when the model is built.

    Raises:
        ConfigError: naming the offending key.
    """
    embed = getattr(model, "embed_dim", None)
    depths = getattr(model, "depths", None)
    heads = getattr(model, "num_heads", None)
    if embed is not None and embed <= 0:
        raise ConfigError(f"model.embed_dim must be > 0 or null, got {embed}")
    for key, value in (("depths", depths), ("num_heads", heads)):
        if value is not None and (not value or any(v <= 0 for v in value)):
            raise ConfigError(f"model.{key} must be a non-empty list of positive ints or null, got {value}")
    if depths is not None and heads is not None and len(depths) != len(heads):
        raise ConfigError(f"model.depths {depths} and model.num_heads {heads} must have the same length")
    if embed is not None and heads is not None:
        for i, h in enumerate(heads):
            if (embed * 2**i) % h:
                raise ConfigError(f"model.num_heads[{i}] = {h} does not divide the stage-{i} width "
                                  f"{embed * 2**i} (model.embed_dim * 2**{i})")


@dataclass
class DataConfig:
    """Pretraining data stream (webdataset shards written by ``echocare shards build``)."""

    shards: str = _f("", "Shard directory, brace pattern, URL or pipe: spec (required).")
    mask_patch_size: int = _f(32, "SimMIM mask block size in pixels (multiple of model.patch_size).")
    mask_ratio: float = _f(0.5, "Fraction of mask blocks hidden from the encoder.")
    augment: bool = _f(True, "Random flips/crops/weak colour jitter (report §4).")
    crop_p: float = _f(0.5, "With data.augment: probability of a random resized crop (else the whole frame).")
    crop_scale: list[float] = _f([0.67, 1.0], "Area fraction range [min, max] of the random resized crop.")
    fit: Literal["crop", "stretch"] = _f(
        "crop", "Non-square frames: 'crop' = centre square, aspect kept; 'stretch' = whole frame resized to the "
        "square, as fine-tuning reads images."
    )
    shuffle_buffer: int = _f(1000, "Sample shuffle buffer per worker.")
    resampled: bool = _f(False, "Draw shards with replacement (endless; best for many ranks/nodes).")
    epoch_length: Optional[int] = _f(
        None, "Samples per process per epoch; required when data.resampled is true."
    )
    dataset_weights: Optional[str] = _f(
        None, "Per-dataset sampling: null = natural, 'temperature:T', or a JSON {name: weight}."
    )
    num_workers: int = _f(2, "DataLoader worker processes per training process.")
    verify: bool = _f(False, "Check each shard's sha256 against index.json before reading it.")

    def validate(self) -> None:
        """Check value ranges."""
        if not 0.0 < self.mask_ratio < 1.0:
            raise ConfigError(f"data.mask_ratio must be in (0, 1), got {self.mask_ratio}")
        if not 0.0 <= self.crop_p <= 1.0:
            raise ConfigError(f"data.crop_p must be a probability in [0, 1], got {self.crop_p}")
        if len(self.crop_scale) != 2 or not 0.0 < self.crop_scale[0] <= self.crop_scale[1] <= 1.0:
            raise ConfigError(f"data.crop_scale must be [min, max] with 0 < min <= max <= 1, got {self.crop_scale}")
        if self.num_workers < 0 or self.shuffle_buffer < 0:
            raise ConfigError("data.num_workers and data.shuffle_buffer must be >= 0")
        if self.resampled and not self.epoch_length:
            raise ConfigError("data.resampled=true needs data.epoch_length (samples per process per epoch)")
        if self.epoch_length is not None and self.epoch_length <= 0:
            raise ConfigError(f"data.epoch_length must be > 0, got {self.epoch_length}")


@dataclass
class OptimConfig:
    """Optimizer and learning-rate schedule (shared by pretraining and fine-tuning)."""

    name: Literal["adamw"] = _f("adamw", "Optimizer.")
    lr: float = _f(1e-4, "Peak learning rate at the reference batch optim.lr_ref_batch.")
    lr_ref_batch: int = _f(256, "Reference batch of optim.lr: peak = lr * effective_batch / ref.")
    scale_lr: bool = _f(True, "Scale the peak lr linearly with the effective batch.")
    weight_decay: float = _f(0.05, "AdamW weight decay (not applied to norms, biases, tokens, tables).")
    betas: list[float] = _f([0.9, 0.999], "AdamW betas (the report's beta2 = 0.9 is a typo).")
    eps: float = _f(1e-8, "AdamW epsilon (the report's 0.9 is a typo).")
    schedule: Literal["cosine", "linear", "constant"] = _f("cosine", "Decay after warmup.")
    warmup_steps: int = _f(10000, "Linear warmup length in optimizer steps.")
    warmup_fraction: Optional[float] = _f(
        None, "If set, warmup = fraction * train.max_steps (overrides optim.warmup_steps)."
    )
    min_lr_ratio: float = _f(0.0, "Final lr as a fraction of the peak lr.")
    clip_grad: Optional[float] = _f(5.0, "Max global gradient norm; null disables clipping.")

    def validate(self) -> None:
        """Check value ranges."""
        if len(self.betas) != 2 or not all(0.0 <= b < 1.0 for b in self.betas):
            raise ConfigError(f"optim.betas must be two values in [0, 1), got {self.betas}")
        if self.lr <= 0 or self.eps <= 0 or self.lr_ref_batch <= 0:
            raise ConfigError("optim.lr, optim.eps and optim.lr_ref_batch must be > 0")
        if self.weight_decay < 0 or self.warmup_steps < 0:
            raise ConfigError("optim.weight_decay and optim.warmup_steps must be >= 0")
        if self.warmup_fraction is not None and not 0.0 <= self.warmup_fraction <= 1.0:
            raise ConfigError(f"optim.warmup_fraction must be in [0, 1], got {self.warmup_fraction}")
        if not 0.0 <= self.min_lr_ratio <= 1.0:
            raise ConfigError(f"optim.min_lr_ratio must be in [0, 1], got {self.min_lr_ratio}")
        if self.clip_grad is not None and self.clip_grad <= 0:
            raise ConfigError(f"optim.clip_grad must be > 0 or null, got {self.clip_grad}")


@dataclass
class TrainConfig:
    """Training loop, checkpointing and logging (shared by pretraining and fine-tuning)."""

    max_steps: int = _f(1_000_000, "Number of optimizer steps.")
    batch_size: int = _f(32, "Micro-batch per process (effective = batch * processes * accum).")
    grad_accum: int = _f(1, "Gradient-accumulation micro-batches per optimizer step.")
    seed: int = _f(0, "Global seed (each process adds its rank for data/augmentation).")
    precision: Literal["auto", "bf16", "fp16", "fp32"] = _f(
        "auto", "Autocast precision; auto = bf16 where the hardware supports it, else fp32."
    )
    grad_checkpointing: bool = _f(False, "Recompute activations in backward to save memory.")
    compile: bool = _f(False, "torch.compile the task in place (nn.Module.compile: same state dict keys); "
                              "measure first: bench/pretrain_step.py --compile.")
    ckpt_every: int = _f(1000, "Checkpoint every N optimizer steps (and at the end / on SIGTERM).")
    keep_last: int = _f(3, "Number of checkpoints to keep.")
    share_threads: bool = _f(True, "Share the cores with other echocare trainings on this machine: each re-plans its "
                                   "intra-op threads every 2 s (cores // live runs; off when OMP_NUM_THREADS is set).")
    log_every: int = _f(10, "Write metrics.jsonl / TensorBoard every N steps.")
    image_every: int = _f(1000, "Write a reconstruction grid PNG every N steps (0 disables).")
    max_nonfinite: int = _f(20, "Abort after this many optimizer steps in a row with a non-finite loss.")
    progress: bool = _f(True, "Show a tqdm progress bar on the main process.")
    tensorboard: bool = _f(True, "Write TensorBoard event files under RUN_DIR/tensorboard.")
    allow_config_change: bool = _f(False, "Resume even if the resolved config differs from the checkpoint's "
                                          "(the changed keys are logged).")

    def validate(self) -> None:
        """Check value ranges."""
        for key in ("max_steps", "batch_size", "grad_accum", "ckpt_every", "keep_last", "log_every",
                    "max_nonfinite"):
            if getattr(self, key) is not None and getattr(self, key) <= 0:  # None: a subclass resolves it
                raise ConfigError(f"train.{key} must be > 0, got {getattr(self, key)}")
        if self.image_every < 0:
            raise ConfigError(f"train.image_every must be >= 0, got {self.image_every}")


@dataclass
class PretrainConfig:
    """Configuration of ``echocare pretrain``."""

    model: ModelConfig = field(default_factory=ModelConfig, metadata={"help": "Model."})
    data: DataConfig = field(default_factory=DataConfig, metadata={"help": "Data stream."})
    optim: OptimConfig = field(default_factory=OptimConfig, metadata={"help": "Optimizer."})
    train: TrainConfig = field(default_factory=TrainConfig, metadata={"help": "Training loop."})

    def validate(self) -> None:
        """Cross-section checks (each section validates itself first)."""
        if not self.data.shards:
            raise ConfigError("data.shards is required (a shard directory or pattern); "
                              "set it in the YAML or with --set data.shards=DIR")
        m, d = self.model, self.data
        if d.mask_patch_size % m.patch_size or m.img_size % d.mask_patch_size:
            raise ConfigError(
                f"data.mask_patch_size ({d.mask_patch_size}) must be a multiple of model.patch_size "
                f"({m.patch_size}) and divide model.img_size ({m.img_size})"
            )
