"""PNG figures of a run: image-panel grids (e.g. SimMIM reconstructions) and the loss curve."""

from __future__ import annotations

from pathlib import Path

import torch

from echocare.engine.logging_utils import read_metrics


def save_panel_grid(panels: dict[str, torch.Tensor], path: str | Path, title: str = "") -> Path:
    """Save rows of images, one column per panel (e.g. input / masked / reconstruction / target).

    Args:
        panels: Ordered ``{name: (K, C, H, W)}`` tensors in [0, 1]; C is 1 or 3.
        path: PNG file to write.
        title: Figure title.

    Returns:
        ``path``.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    if not panels:
        raise ValueError("save_panel_grid: no panels given")
    names = list(panels)
    rows = min(int(t.shape[0]) for t in panels.values())
    fig, axes = plt.subplots(rows, len(names), figsize=(2.2 * len(names), 2.2 * rows), squeeze=False)
    for col, name in enumerate(names):
        images = panels[name].detach().float().cpu().clamp(0, 1)  # (K, C, H, W)
        for row in range(rows):
            ax = axes[row][col]
            img = images[row]
            if img.shape[0] == 1:
                ax.imshow(img[0].numpy(), cmap="gray", vmin=0, vmax=1)
            else:
                ax.imshow(img[:3].permute(1, 2, 0).numpy())
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=9)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def plot_loss_curve(metrics_path: str | Path, out_path: str | Path,
                    keys: tuple[str, ...] = ("loss", "loss_mim", "loss_hie")) -> Path | None:
    """Plot the losses of ``metrics.jsonl`` against step (log y axis when positive).

    Returns:
        ``out_path``, or None when there are no records yet.
    """
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    records = read_metrics(metrics_path)
    if not records:
        return None
    fig, ax = plt.subplots(figsize=(6, 4))
    positive = True
    for key in keys:
        pts = [(r["step"], r[key]) for r in records if isinstance(r.get(key), (int, float))]
        if not pts:
            continue
        steps, values = zip(*pts)
        positive = positive and min(values) > 0
        ax.plot(steps, values, label=key)
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    if positive:
        ax.set_yscale("log")
    ax.grid(True, alpha=0.3)
    ax.legend()
    fig.tight_layout()
    out_path = Path(out_path)
    fig.savefig(out_path, dpi=90)
    plt.close(fig)
    return out_path
