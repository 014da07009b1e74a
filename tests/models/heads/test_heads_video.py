"""Video clip classifier (WAUVE-style) and clip-averaged video scores."""

from __future__ import annotations

import pytest
import torch

from echocare.models.heads import FinetuneModel, VideoClassificationHead, clip_starts, create_head, video_scores


class MeanLogitModel(torch.nn.Module):
    """Clip logit = mean intensity of the clip (binary, one logit); records its calls."""

    def __init__(self) -> None:
        super().__init__()
        self.batches: list[int] = []
        self.modes: list[bool] = []

    def forward(self, clips: torch.Tensor) -> dict[str, torch.Tensor]:
        self.batches.append(clips.shape[0])
        self.modes.append(self.training)
        return {"logits": clips.mean(dim=(1, 2, 3, 4)).unsqueeze(-1)}  # (b, 1)


def test_clip_starts():
    assert clip_starts(20, 8) == [0, 8]
    assert clip_starts(20, 8, stride=4) == [0, 4, 8, 12]
    assert clip_starts(7, 8) == []
    with pytest.raises(ValueError, match="stride"):
        clip_starts(20, 8, stride=0)


def test_video_scores_average_clip_probabilities():
    t = 19
    video = torch.arange(t, dtype=torch.float32).view(t, 1, 1, 1).expand(t, 1, 4, 4) / 10.0
    model = MeanLogitModel().train()
    res = video_scores(model, video, clip_len=8, batch_size=1)
    # WAUVE: adjacent non-overlapping 8-frame clips, the 3 trailing frames left out
    assert res["clip_starts"].tolist() == [0, 8] and res["frames_left_out"] == 3
    expected_clips = torch.sigmoid(torch.tensor([3.5, 11.5]) / 10.0)
    assert torch.allclose(res["clip_scores"][:, 0], expected_clips)
    assert torch.allclose(res["score"], expected_clips.mean().view(1))
    assert model.batches == [1, 1] and model.modes == [False, False] and model.training  # eval, then restored
    overlapping = video_scores(MeanLogitModel(), video, clip_len=8, stride=4)
    assert overlapping["clip_scores"].shape == (3, 1) and overlapping["frames_left_out"] == 3
    with pytest.raises(ValueError, match="fewer than one clip"):
        video_scores(model, video[:5], clip_len=8)
    short = video_scores(model, video[:5], clip_len=8, pad_short=True)
    padded_mean = (torch.arange(5.0).sum() + 3 * 4.0) / 8 / 10.0
    assert torch.allclose(short["score"], torch.sigmoid(padded_mean).view(1))
    with pytest.raises(ValueError, match=r"\(T, C, H, W\)"):
        video_scores(model, video[None], clip_len=8)


def test_video_head_trains_and_scores_a_video(tiny_backbone, train, assert_all_head_grads):
    g = torch.Generator().manual_seed(6)
    labels = torch.tensor([0, 1, 0, 1])
    clips = torch.rand(4, 4, 1, 64, 64, generator=g) * 0.4 + 0.3 * labels.view(4, 1, 1, 1, 1)
    backbone = tiny_backbone()
    model = FinetuneModel(backbone, create_head("video", backbone.feature_info, num_classes=2, embed_dim=32))
    assert isinstance(model.head, VideoClassificationHead) and model.task == "video_classification"
    out = model(clips)
    assert out["logits"].shape == (4, 2) and out["frame_weights"].shape == (4, 4)
    losses = train(model, clips, {"label": labels}, lr=3e-4)
    assert losses[-1] < 0.7 * losses[0], losses
    assert_all_head_grads(model, clips, {"label": labels})
    video = torch.cat([clips[1], clips[3]])  # (8, 1, 64, 64): two 4-frame clips of the positive class
    res = video_scores(model, video, clip_len=4)
    assert res["clip_scores"].shape == (2, 2)
    assert torch.allclose(res["score"], res["clip_scores"].mean(0))
    assert float(res["score"][1]) > 0.5
    with pytest.raises(ValueError, match="clips"):
        model(clips[:, 0])
