"""Named EchoCare encoder configurations and their registration with timm.

``list_models()`` gives the names, ``create_encoder(name, **kw)`` builds an :class:`EchoCareSwin`.
Every name is also registered in timm's model registry (the designed extension point of timm), so after
``import echocare`` the call ``timm.create_model("echocare_swin_base")`` returns an ``EchoCareSwin``
(``features_only=True`` works too). Registration happens once, when this module is first imported.
"""

from __future__ import annotations

import difflib
import logging
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import timm.models
from timm.models import build_model_with_cfg, register_model

from echocare.models.encoder import EchoCareSwin

logger = logging.getLogger(__name__)

__all__ = ["ENCODER_SPECS", "EncoderSpec", "check_architecture", "create_encoder", "list_models", "resolve_model_name"]


@dataclass(frozen=True)
class EncoderSpec:
    """Architecture of one named encoder.

    Attributes:
        embed_dim: channels of the first stage (doubled at each later stage).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        timm_architecture: stock timm model with the same block layout (used for export).
    """

    embed_dim: int
    depths: tuple[int, ...]
    num_heads: tuple[int, ...]
    timm_architecture: str


ENCODER_SPECS: dict[str, EncoderSpec] = {
    # Micro config for tests and smoke runs: 4 stages (strides p..8p like the real ones), 2 blocks in
    # stage 0 so shifted windows are exercised.
    "echocare_swin_debug": EncoderSpec(24, (2, 1, 1, 1), (1, 2, 4, 8), "swin_tiny_patch4_window7_224"),
    # One-machine sizes between debug (0.7 M params, 0.05 GMACs per 128-px image) and tiny (27.5 M, 1.5 GMACs):
    # nano = 2.3 M params, 0.12 GMACs at 128 px (head dim 32 everywhere, 2 blocks per stage): pretrains a few
    # thousand images on 2 CPU cores in minutes; micro = 6.9 M, 0.38 GMACs at 128 px (tiny's depths and head
    # dim 24 at half tiny's width): the CPU-hour / small-GPU size. Both keep 4 stages (strides 4..32).
    "echocare_swin_nano": EncoderSpec(32, (2, 2, 2, 2), (1, 2, 4, 8), "swin_tiny_patch4_window7_224"),
    "echocare_swin_micro": EncoderSpec(48, (2, 2, 6, 2), (2, 4, 8, 16), "swin_tiny_patch4_window7_224"),
    "echocare_swin_tiny": EncoderSpec(96, (2, 2, 6, 2), (3, 6, 12, 24), "swin_tiny_patch4_window7_224"),
    "echocare_swin_small": EncoderSpec(96, (2, 2, 18, 2), (3, 6, 12, 24), "swin_small_patch4_window7_224"),
    "echocare_swin_base": EncoderSpec(128, (2, 2, 18, 2), (4, 8, 16, 32), "swin_base_patch4_window7_224"),
    "echocare_swin_large": EncoderSpec(192, (2, 2, 18, 2), (6, 12, 24, 48), "swin_large_patch4_window7_224"),
}

# Echocare defaults (tech report §3.2: 256 px input, window 8 divides the 64/32/16/8 token grids).
ENCODER_DEFAULTS: dict[str, Any] = {
    "in_chans": 1,
    "img_size": 256,
    "patch_size": 4,
    "window_size": 8,
    "drop_path_rate": 0.1,
    "num_classes": 0,
}


def list_models() -> list[str]:
    """Names accepted by :func:`create_encoder` and ``create_model``, smallest first."""
    return list(ENCODER_SPECS)


def resolve_model_name(name: str) -> str:
    """Return the canonical model name, accepting the short form (``"swin_base"`` or ``"base"``).

    Raises:
        ValueError: unknown name; the message lists the known names and close matches.
    """
    for candidate in (name, f"echocare_{name}", f"echocare_swin_{name}"):
        if candidate in ENCODER_SPECS:
            return candidate
    close = difflib.get_close_matches(name, list(ENCODER_SPECS), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(close)}?" if close else ""
    raise ValueError(f"unknown model {name!r}; known models: {', '.join(ENCODER_SPECS)}.{hint}")


def check_architecture(embed_dim: int, depths: Any, num_heads: Any, where: str = "model") -> None:
    """Validate a Swin block layout.

    Args:
        embed_dim: channels of stage 0 (stage ``i`` has ``embed_dim * 2**i``).
        depths: blocks per stage.
        num_heads: attention heads per stage.
        where: prefix of the error message (e.g. the config section).

    Raises:
        ValueError: non-positive values, ``depths``/``num_heads`` of different lengths, or a stage whose
            width is not divisible by its head count.
    """
    depths, num_heads = list(depths), list(num_heads)
    if embed_dim <= 0 or not depths or any(d <= 0 for d in depths) or any(h <= 0 for h in num_heads):
        raise ValueError(f"{where}: embed_dim {embed_dim}, depths {depths} and num_heads {num_heads} must be positive "
                         "(and depths non-empty)")
    if len(depths) != len(num_heads):
        raise ValueError(f"{where}: depths {depths} and num_heads {num_heads} differ in length")
    for i, heads in enumerate(num_heads):
        if (embed_dim * 2**i) % heads:
            raise ValueError(f"{where}: stage {i} has {embed_dim * 2**i} channels (embed_dim * 2**{i}), "
                             f"not divisible by num_heads[{i}] = {heads}")


def _pretrained_cfg(name: str) -> dict[str, Any]:
    """timm pretrained cfg (no weights: echocare weights come through ``load_backbone``)."""
    return {
        "architecture": name,
        "num_classes": 0,
        "input_size": (1, 256, 256),
        "fixed_input_size": False,
        "mean": (0.0,),
        "std": (1.0,),
        "interpolation": "bicubic",
        "crop_pct": 1.0,
        "first_conv": "patch_embed.proj",
        "classifier": "head.fc",
        "license": "apache-2.0",
    }


def _build(name: str, pretrained: bool = False, **kwargs: Any) -> EchoCareSwin:
    if pretrained:
        raise ValueError(
            f"{name}: no downloadable pretrained weights; load an exported encoder with "
            "echocare.load_backbone('encoder.safetensors')"
        )
    spec = ENCODER_SPECS[name]
    # timm.create_model passes its own builder options; they go to the builder, not the model.
    builder_kwargs = {k: kwargs.pop(k) for k in ("pretrained_cfg_overlay", "cache_dir") if k in kwargs}
    pretrained_cfg = kwargs.pop("pretrained_cfg", None)
    if not isinstance(pretrained_cfg, dict):
        pretrained_cfg = _pretrained_cfg(name)
    args: dict[str, Any] = dict(ENCODER_DEFAULTS)
    args.update(embed_dim=spec.embed_dim, depths=spec.depths, num_heads=spec.num_heads)
    args.update({k: v for k, v in kwargs.items() if v is not None or k not in ("embed_dim", "depths", "num_heads")})
    if "head_dim" not in args:  # an explicit head_dim decouples width from heads (timm semantics)
        check_architecture(int(args["embed_dim"]), args["depths"], args["num_heads"], where=name)
    elif len(args["num_heads"]) != len(args["depths"]):
        raise ValueError(f"{name}: num_heads {args['num_heads']} and depths {args['depths']} differ in length")
    args.setdefault("timm_architecture", spec.timm_architecture)
    feature_cfg = {"flatten_sequential": True, "out_indices": tuple(range(len(args["depths"])))}
    if "out_indices" in args:
        feature_cfg["out_indices"] = tuple(args.pop("out_indices"))
    return build_model_with_cfg(
        EchoCareSwin,
        name,
        pretrained=False,
        pretrained_cfg=pretrained_cfg,
        feature_cfg=feature_cfg,
        **builder_kwargs,
        **args,
    )


def create_encoder(name: str, **kwargs: Any) -> EchoCareSwin:
    """Build a named EchoCare encoder.

    Args:
        name: one of :func:`list_models` (short forms like ``"base"`` accepted).
        **kwargs: ``SwinTransformer`` arguments overriding the defaults (``in_chans=1, img_size=256,
            patch_size=4, window_size=8, drop_path_rate=0.1, num_classes=0``), e.g. ``img_size=(128, 192)``,
            ``patch_size=2``, ``embed_dim``/``depths``/``num_heads`` (None keeps the named size's value).

    Returns:
        A headless ``EchoCareSwin`` with random weights.
    """
    model = _build(resolve_model_name(name), **kwargs)
    if not isinstance(model, EchoCareSwin):
        raise TypeError("create_encoder returns an EchoCareSwin; features_only wrappers come from timm.create_model")
    return model


def _make_entrypoint(name: str) -> Callable[..., EchoCareSwin]:
    def entrypoint(pretrained: bool = False, **kwargs: Any) -> EchoCareSwin:
        return _build(name, pretrained=pretrained, **kwargs)

    entrypoint.__name__ = name
    entrypoint.__qualname__ = name
    entrypoint.__module__ = __name__
    entrypoint.__doc__ = f"EchoCare {name} encoder (Swin + SimMIM mask token), registered by echocare."
    return entrypoint


def _register_with_timm() -> None:
    """Register every encoder name in timm's registry once; never overwrite a foreign model."""
    for name in ENCODER_SPECS:
        if timm.models.is_model(name):
            existing = timm.models.model_entrypoint(name)
            if getattr(existing, "__module__", None) != __name__:
                warnings.warn(
                    f"timm already has a model named {name!r} from {existing.__module__}; echocare does not "
                    "overwrite it (use echocare.models.create_encoder instead)",
                    stacklevel=2,
                )
            continue
        entrypoint = _make_entrypoint(name)
        globals()[name] = entrypoint  # timm lists registered names in this module's __all__
        register_model(entrypoint)
        logger.debug("registered %s with timm", name)


_register_with_timm()
