#!/usr/bin/env python
"""Convert an echocare encoder export to MONAI ``SwinUNETR.swinViT`` weights.

Usage::

    python tools/convert_to_monai.py encoder.safetensors --out swinvit.safetensors [--prefix swinViT.]

Then, in MONAI (2-D; sizes from the printed kwargs; SwinUNETR needs patch_size 2 and an
embed_dim divisible by 12, otherwise use ``--prefix ''`` and MONAI's ``SwinTransformer`` alone)::

    net = SwinUNETR(in_channels=1, out_channels=2, spatial_dims=2, patch_size=2, window_size=8,
                    feature_size=EMBED_DIM, depths=DEPTHS, num_heads=HEADS, patch_norm=True)
    net.load_state_dict(safetensors.torch.load_file("swinvit.safetensors"), strict=False)

The mapping logic lives in :mod:`echocare.models.monai_compat`; see docs/export.md.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, convert, print the MONAI kwargs; return an exit code."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("src", help="echocare export (.safetensors) or timm Swin state dict")
    parser.add_argument("--out", required=True, help="output .safetensors")
    parser.add_argument("--prefix", default="swinViT.",
                        help="key prefix: 'swinViT.' for SwinUNETR (default), '' for a bare swinViT")
    parser.add_argument("--img-size", type=int, default=None,
                        help="input size to check exact equivalence at (default: the export's img_size)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    from safetensors import safe_open

    from echocare.models.monai_compat import convert_file_to_monai

    try:
        conversion = convert_file_to_monai(args.src, args.out, prefix=args.prefix, img_size=args.img_size)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    with safe_open(args.out, framework="pt") as f:
        meta = f.metadata()
    print(f"wrote {args.out}: {len(conversion.state_dict)} tensors")
    print(f"MONAI SwinTransformer kwargs: {meta['monai_kwargs']}")
    print(f"left at MONAI init: {', '.join(conversion.uninitialised)}")
    print(f"dropped (no MONAI counterpart): {', '.join(conversion.dropped) or '-'}")
    for problem in json.loads(meta["incompatibilities"]):
        print(f"warning: features differ from timm at this size: {problem}")
    for problem in json.loads(meta["swin_unetr_problems"]):
        print(f"warning: not usable inside a SwinUNETR: {problem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
