"""EchoCare image encoder: a timm Swin Transformer with a SimMIM mask token.

``EchoCareSwin`` subclasses :class:`timm.models.swin_transformer.SwinTransformer` and adds exactly one
parameter, ``mask_token``. Its state dict minus ``mask_token`` is therefore a stock timm Swin state dict:
``timm.create_model(encoder.timm_architecture, **encoder.timm_kwargs)`` builds an identical network that
loads it strictly, without echocare installed.

Images enter the encoder as-is, in [0, 1]: echocare never applies a mean/std normalisation.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch
from timm.layers import trunc_normal_
from timm.models.swin_transformer import SwinTransformer, WindowAttention
from torch import nn

__all__ = ["EchoCareSwin", "apply_mask_token"]


def apply_mask_token(x: torch.Tensor, mask: torch.Tensor, mask_token: torch.Tensor) -> torch.Tensor:
    """Replace masked patch embeddings by the learnable mask token (SimMIM).

    Args:
        x: patch embeddings, (B, h, w, D) NHWC.
        mask: token mask, (B, h, w); 1 = masked, 0 = visible (fractional values blend).
        mask_token: (1, 1, 1, D) learnable embedding e_[M].

    Returns:
        (B, h, w, D) embeddings ``x * (1 - w) + mask_token * w``.

    Raises:
        ValueError: if ``mask`` does not have shape (B, h, w).
    """
    if mask.shape != x.shape[:3]:
        raise ValueError(
            f"mask has shape {tuple(mask.shape)} but the patch grid is {tuple(x.shape[:3])} (B, H/p, W/p); "
            "give the mask at token resolution (one value per patch)"
        )
    w = mask.unsqueeze(-1).to(x.dtype)  # (B, h, w, 1)
    return x * (1.0 - w) + mask_token.to(x.dtype) * w


def stage_windows(window_size: Any, num_stages: int) -> list[list[int]]:
    """Per-stage ``[h, w]`` windows from a ``SwinTransformer`` ``window_size`` argument.

    Args:
        window_size: an int, one ``(h, w)`` pair for all stages, or one int / pair per stage (as timm).
        num_stages: number of Swin stages.

    Returns:
        ``num_stages`` lists ``[h, w]``.
    """
    if isinstance(window_size, int):
        return [[window_size, window_size] for _ in range(num_stages)]
    sizes = list(window_size)
    if len(sizes) == 2 and all(isinstance(v, int) for v in sizes):
        return [[int(sizes[0]), int(sizes[1])] for _ in range(num_stages)]
    if len(sizes) != num_stages:
        raise ValueError(f"window_size {window_size!r}: expected an int, (h, w) or one per stage ({num_stages})")
    return [[w, w] if isinstance(w, int) else [int(w[0]), int(w[1])] for w in sizes]


def take_indices(num_stages: int, indices: int | list[int] | None) -> tuple[list[int], int]:
    """Absolute stage indices to return and the deepest one (timm's ``forward_intermediates`` rule).

    Args:
        num_stages: number of stages.
        indices: None = all, int n = the last n, or a list of indices (negative count from the end).

    Returns:
        ``(indices, max index)``.

    Raises:
        ValueError: an index out of range.
    """
    if indices is None:
        indices = num_stages
    if isinstance(indices, int):
        if not 0 < indices <= num_stages:
            raise ValueError(f"last-n ({indices}) is out of range (1 to {num_stages})")
        taken = list(range(num_stages - indices, num_stages))
    else:
        taken = [num_stages + i if i < 0 else i for i in indices]
        bad = [i for i in taken if not 0 <= i < num_stages]
        if bad or not taken:
            raise ValueError(f"stage indices {list(indices)} are out of range (0 to {num_stages - 1})")
    return taken, max(taken)


_TIMM_DEFAULT_WINDOW = inspect.signature(SwinTransformer.__init__).parameters["window_size"].default


def set_fused_attention(module: nn.Module, enable: bool = True) -> int:
    """Switch timm's window attention to ``torch.nn.functional.scaled_dot_product_attention`` (or back).

    timm marks fused attention in Swin as experimental and leaves it off unless ``TIMM_FUSED_ATTN=2``;
    this sets it per module instead (no global state). Outputs agree with the unfused path to float
    rounding, not bit for bit; weights and state dicts are unchanged.

    Args:
        module: any module containing timm ``WindowAttention`` layers (e.g. an ``EchoCareSwin`` or a
            pretraining model around one).
        enable: fused (True) or timm's explicit softmax(QK^T + bias) V (False).

    Returns:
        The number of attention layers switched.
    """
    n = 0
    for m in module.modules():
        if isinstance(m, WindowAttention):
            m.fused_attn = bool(enable)
            n += 1
    return n


class EchoCareSwin(SwinTransformer):
    """Swin Transformer backbone with a SimMIM mask token and a stock-timm identity.

    All constructor arguments are those of timm's ``SwinTransformer``; echocare defaults differ:
    ``in_chans=1``, ``num_classes=0`` (headless backbone) and ``strict_img_size=False`` (any input whose
    sides are multiples of ``patch_size`` is accepted, square or not, attention masks are built per call).

    Args:
        timm_architecture: the stock timm model name this network is a re-parameterisation of
            (e.g. ``"swin_base_patch4_window7_224"``); recorded for export.
        **kwargs: forwarded to ``SwinTransformer``.
    """

    def __init__(self, timm_architecture: str = "swin_tiny_patch4_window7_224", **kwargs: Any) -> None:
        kwargs.setdefault("in_chans", 1)
        kwargs.setdefault("num_classes", 0)
        if not kwargs.get("dynamic_img_size", False):
            kwargs.setdefault("strict_img_size", False)
        super().__init__(**kwargs)
        self.timm_architecture = timm_architecture
        self.in_chans = int(kwargs["in_chans"])  # timm < 1.0.2x does not record it
        # the constructor's windows (what timm.create_model needs), per stage; set_input_size() is not used
        self._windows = stage_windows(kwargs.get("window_size", _TIMM_DEFAULT_WINDOW), len(self.layers))
        mlp_ratio = kwargs.get("mlp_ratio", 4.0)
        self._mlp_ratio = [float(r) for r in mlp_ratio] if isinstance(mlp_ratio, (list, tuple)) else float(mlp_ratio)
        self._qkv_bias = bool(kwargs.get("qkv_bias", True))
        self._depths = [len(stage.blocks) for stage in self.layers]
        self._num_heads = [int(h) for h in kwargs.get("num_heads", (3, 6, 12, 24))]
        head_dim = kwargs.get("head_dim")
        self._head_dim = list(head_dim) if isinstance(head_dim, (list, tuple)) else head_dim
        self._strict_img_size = bool(self.patch_embed.strict_img_size)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, 1, self.embed_dim))  # (1, 1, 1, D)
        trunc_normal_(self.mask_token, std=0.02)

    # ------------------------------------------------------------------ identity / export
    @property
    def patch_size(self) -> int:
        """Patch size in pixels (square patches)."""
        return int(self.patch_embed.patch_size[0])

    @property
    def timm_kwargs(self) -> dict[str, Any]:
        """JSON-able kwargs for ``timm.create_model(self.timm_architecture, **kwargs)``.

        The network built from them has the same parameter names and shapes as this encoder without
        ``mask_token``. Training-only settings (drop path, dropout) are left at timm's defaults.
        """
        windows = self._windows
        if all(w == windows[0] for w in windows) and windows[0][0] == windows[0][1]:
            window: Any = windows[0][0]
        else:
            window = windows
        kwargs: dict[str, Any] = {
            "img_size": [int(s) for s in self.patch_embed.img_size],
            "patch_size": self.patch_size,
            "in_chans": int(self.in_chans),
            "num_classes": int(self.num_classes),
            "global_pool": self.global_pool,
            "embed_dim": int(self.embed_dim),
            "depths": list(self._depths),
            "num_heads": list(self._num_heads),
            "window_size": window,
            "mlp_ratio": self._mlp_ratio,
            "qkv_bias": self._qkv_bias,
            "strict_img_size": self._strict_img_size,
        }
        if self._head_dim is not None:
            kwargs["head_dim"] = self._head_dim
        return kwargs

    def stock_state_dict(self) -> dict[str, torch.Tensor]:
        """State dict loadable strictly by the stock timm model (everything but ``mask_token``)."""
        return {k: v for k, v in self.state_dict().items() if k != "mask_token"}

    @torch.jit.ignore
    def no_weight_decay(self) -> set[str]:
        """Parameter names exempt from weight decay: relative position tables and the mask token."""
        return set(super().no_weight_decay()) | {"mask_token"}

    # ------------------------------------------------------------------ forward
    def _embed(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Patch-embed ``x`` (B, C, H, W) -> (B, H/p, W/p, D) and mix in the mask token."""
        if x.ndim != 4:
            raise ValueError(f"expected images of shape (B, C, H, W), got {tuple(x.shape)}")
        if x.shape[1] != self.in_chans:
            raise ValueError(
                f"images have {x.shape[1]} channels but the encoder was built with in_chans={self.in_chans}"
            )
        p = self.patch_size
        if x.shape[2] % p or x.shape[3] % p:
            raise ValueError(f"image size {tuple(x.shape[2:])} is not a multiple of the patch size {p}")
        x = self.patch_embed(x)  # (B, h, w, D)
        if mask is not None:
            x = apply_mask_token(x, mask, self.mask_token)
        return x

    def forward_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """Encode images.

        Args:
            x: images (B, C, H, W) in [0, 1]; H, W multiples of ``patch_size``.
            mask: optional token mask (B, H/p, W/p), 1 = masked.

        Returns:
            (B, H/(8p), W/(8p), num_features) NHWC, after the final norm (timm semantics).
        """
        x = self._embed(x, mask)
        x = self.layers(x)
        return self.norm(x)

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        mask: torch.Tensor | None = None,
    ) -> list[torch.Tensor] | tuple[torch.Tensor, list[torch.Tensor]]:
        """Return per-stage features (timm semantics) with an optional mask token.

        Args:
            x: images (B, C, H, W).
            indices: last n stages if int, all if None, or the stage indices to return.
            norm: apply the final norm to the last stage's intermediate.
            stop_early: stop after the last requested stage.
            output_fmt: only ``"NCHW"``.
            intermediates_only: return only the list of intermediates.
            mask: optional token mask (B, H/p, W/p), 1 = masked.

        Returns:
            Intermediates ``[(B, C_i, H/s_i, W/s_i)]`` with strides s_i = p * 2**i, or
            ``(final NHWC features, intermediates)``.
        """
        if output_fmt != "NCHW":
            raise ValueError(f"output_fmt must be 'NCHW', got {output_fmt!r}")
        take, max_index = take_indices(len(self.layers), indices)
        x = self._embed(x, mask)
        num_stages = len(self.layers)
        stages = self.layers[: max_index + 1] if stop_early else self.layers
        intermediates: list[torch.Tensor] = []
        last = -1
        for last, stage in enumerate(stages):
            x = stage(x)  # (B, h_i, w_i, C_i)
            if last in take:
                x_inter = self.norm(x) if norm and last == num_stages - 1 else x
                intermediates.append(x_inter.permute(0, 3, 1, 2).contiguous())
        if intermediates_only:
            return intermediates
        if last == num_stages - 1:
            x = self.norm(x)
        return x, intermediates
