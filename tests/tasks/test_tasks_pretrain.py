"""PretrainTask: engine-task contract around the pretraining model, and its visual panels."""

from __future__ import annotations

import torch

import echocare
from echocare.tasks.pretrain import HIE_CHECK_EVERY, PretrainTask


def _batch(onto, b=2, size=64, p=4):
    g = torch.Generator().manual_seed(0)
    targets = torch.stack([onto.encode(["thorax/heart"], label_space=None) for _ in range(b)])
    return {"image": torch.rand(b, 1, size, size, generator=g),
            "mask": (torch.rand(b, size // p, size // p, generator=g) > 0.5).float(),
            "targets": targets, "key": ["a", "b"][:b]}


def test_forward_contract_and_backward():
    onto = echocare.load_ontology()
    task = PretrainTask(echocare.create_model("echocare_swin_debug", ontology=onto, img_size=64))
    out = task(_batch(onto))
    assert set(out) == {"loss", "logs", "recon"}
    assert set(out["logs"]) == {"loss_mim", "loss_hie"}
    assert out["logs"]["loss_hie"] > 0 and not out["logs"]["loss_mim"].requires_grad
    torch.testing.assert_close(out["loss"].detach(), out["logs"]["loss_mim"] + out["logs"]["loss_hie"])
    out["loss"].backward()
    assert task.model.encoder.patch_embed.proj.weight.grad is not None


def test_mim_only_model_ignores_targets_and_visualize_panels():
    onto = echocare.load_ontology()
    task = PretrainTask(echocare.create_model("echocare_swin_debug", ontology=None, img_size=64), num_visuals=1)
    batch = _batch(onto)
    out = task(batch)
    assert float(out["logs"]["loss_hie"]) == 0.0
    panels = task.visualize(batch)
    assert list(panels) == ["input", "masked", "reconstruction", "target"]
    assert all(t.shape == (1, 1, 64, 64) for t in panels.values())
    # masked + target recompose the input exactly (they split it along the token mask)
    torch.testing.assert_close(panels["masked"] + panels["target"], panels["input"])
    assert float(panels["reconstruction"].min()) >= 0 and float(panels["reconstruction"].max()) <= 1
    # the reconstruction panel keeps the visible pixels of the input and shows the prediction only where masked
    visible = panels["masked"] > 0
    torch.testing.assert_close(panels["reconstruction"][visible], panels["input"][visible])


def test_grad_checkpointing_switch():
    task = PretrainTask(echocare.create_model("echocare_swin_debug", img_size=64))
    task.set_grad_checkpointing(True)
    assert all(stage.grad_checkpointing for stage in task.model.encoder.layers)


def _saturated_task(onto):
    """A real model whose classifier says 'yes' to every node with certainty (what an early collapse learns)."""
    task = PretrainTask(echocare.create_model("echocare_swin_debug", ontology=onto, img_size=64))
    last = task.model.classifier.mlp[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(20.0)
    return task


def test_hie_collapse_warns_once_when_labels_are_trivially_separable(caplog):
    onto = echocare.load_ontology()
    task = _saturated_task(onto).train()
    batch = _batch(onto)  # one label, no label space: only positives are known, all-"yes" is a perfect score
    unlabeled = _batch(onto)
    unlabeled["targets"] = torch.full_like(unlabeled["targets"], -1.0)
    with caplog.at_level("WARNING", logger="echocare.tasks.pretrain"):
        for _ in range(HIE_CHECK_EVERY - 1):  # read back once per HIE_CHECK_EVERY calls: nothing yet
            out = task(unlabeled if task._calls < 2 else batch)  # calls 1-2 unlabeled: they cannot collapse
        assert not caplog.records and task.hie_collapsed_at is None
        for _ in range(HIE_CHECK_EVERY + 1):
            out = task(batch)
    assert float(out["logs"]["loss_hie"]) < 1e-3
    assert len(caplog.records) == 1
    assert "L_HIE collapsed early" in caplog.records[0].message and "dataset identity" in caplog.records[0].message
    assert task.hie_collapsed_at == 3 and "at training step 3" in caplog.records[0].message


def test_no_collapse_warning_with_negatives_or_unlabeled(caplog):
    onto = echocare.load_ontology()
    task = _saturated_task(onto).train()
    with_negatives = _batch(onto)
    with_negatives["targets"] = torch.stack([onto.encode(["thorax/heart"], label_space=["thorax/heart", "thorax/lung"])
                                             for _ in range(2)])
    unlabeled = _batch(onto)
    unlabeled["targets"] = torch.full_like(unlabeled["targets"], -1.0)
    with caplog.at_level("WARNING", logger="echocare.tasks.pretrain"):
        assert float(task(with_negatives)["logs"]["loss_hie"]) > 1e-3  # "yes" to the lung negative costs
        for _ in range(HIE_CHECK_EVERY):
            task(unlabeled)
        task.eval()
        task(_batch(onto))  # evaluation calls are not training steps
    assert not caplog.records and task.hie_collapsed_at is None


class _ScriptedLoss(torch.nn.Module):
    """Stands in for the pretraining model: returns the next L_MIM of a script on every call."""

    num_classes = 0

    def __init__(self, losses):
        super().__init__()
        self.losses = iter(losses)

    def forward(self, images, mask, targets=None):
        loss = torch.tensor(float(next(self.losses)))
        return {"loss": loss, "loss_mim": loss, "loss_hie": torch.zeros(()), "recon": images}


def _run_script(losses, caplog, train=True):
    task = PretrainTask(_ScriptedLoss(losses)).train(train)
    batch = {"image": torch.zeros(1, 1, 8, 8), "mask": torch.zeros(1, 2, 2)}
    with caplog.at_level("WARNING", logger="echocare.tasks.pretrain"):
        for _ in range(len(losses)):
            task(batch)
    return task


def test_mim_plateau_warns_once_when_the_loss_stays_flat(caplog):
    from echocare.tasks.pretrain import MIM_PLATEAU_STEPS

    flat = [0.3] * 50 + [0.125 + 0.002 * ((i % 7) - 3) / 3 for i in range(1450)]  # noisy, but no 5% drop
    task = _run_script(flat, caplog)
    messages = [r.message for r in caplog.records]
    assert len(messages) == 1 and "still on its early plateau" in messages[0] and "decoder_output=linear" in messages[0]
    assert task.mim_plateau_at == MIM_PLATEAU_STEPS


def test_no_plateau_warning_once_the_loss_leaves_it(caplog):
    # on the plateau until call 400, then down: the window 401-500 is > 5% below calls 101-200 (nano, sigmoid)
    escaping = [0.125] * 400 + [0.11] * 1100
    task = _run_script(escaping, caplog)
    slow_but_real = [0.125 - 1e-5 * i for i in range(1500)]  # 8% lower at the end: a 100-call mean moves 5%
    eval_only = [0.125] * 1200  # evaluation calls are not training steps
    _run_script(slow_but_real, caplog)
    _run_script(eval_only, caplog, train=False)
    assert not caplog.records and task.mim_plateau_at is None
