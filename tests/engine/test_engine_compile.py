"""train.compile compiles the task in place: same training result, same checkpoint keys."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from echocare.config import OptimConfig, TrainConfig
from echocare.engine import Trainer


@pytest.fixture(autouse=True)
def _fresh_accelerate_state():
    from accelerate.state import AcceleratorState, GradientState

    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()


class Regress(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Linear(8, 16), nn.GELU(), nn.Linear(16, 1))

    def forward(self, batch):
        loss = (self.net(batch["image"]) - batch["y"]).pow(2).mean()
        return {"loss": loss, "logs": {}}


def _batches():
    g = torch.Generator().manual_seed(1)
    x = torch.randn(4, 8, generator=g)
    return [{"image": x, "y": x.sum(1, keepdim=True), "key": ["k"] * 4}]


@pytest.mark.slow
def test_compiled_training_matches_eager_and_keeps_keys(tmp_path):
    results = {}
    for compiled in (False, True):
        tc = TrainConfig(max_steps=3, batch_size=4, ckpt_every=3, log_every=1, image_every=0, progress=False,
                         precision="fp32", tensorboard=False, compile=compiled)
        run = tmp_path / str(compiled)
        task = Regress()
        Trainer(tc, OptimConfig(lr=1e-2, lr_ref_batch=4, warmup_steps=0), run).fit(task, _batches())
        results[compiled] = load_file(str(next(run.glob("checkpoints/step-*/model.safetensors"))))
    assert sorted(results[True]) == sorted(results[False])  # no "_orig_mod." prefix
    for key, value in results[False].items():
        torch.testing.assert_close(results[True][key], value, rtol=1e-4, atol=1e-5)
