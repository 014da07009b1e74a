"""Fine-tuning task: model.init (export / random), layer decay, linear probe, save/load, metrics."""

import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from echocare.engine.optim import build_param_groups
from echocare.models import create_encoder
from echocare.tasks.finetune import (
    FinetuneTask,
    build_backbone,
    build_finetune_model,
    head_arguments,
    load_finetuned,
    save_finetuned,
)
from echocare.tasks.finetune.evaluation import compute_metrics, headline


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    enc = create_encoder("echocare_swin_debug", img_size=64, window_size=8)
    path = tmp_path_factory.mktemp("enc") / "encoder.safetensors"
    state = {k: v.contiguous() for k, v in enc.state_dict().items() if k != "mask_token"}
    save_file(state, str(path), metadata={"format": "echocare-encoder", "architecture": enc.timm_architecture,
                                          "model_args": json.dumps(enc.timm_kwargs)})
    return path, enc


def test_init_from_export_keeps_weights_and_random_differs(exported):
    path, enc = exported
    bb = build_backbone(str(path), "echocare_swin_debug", 64, drop_path_rate=0.0)
    ref = enc.state_dict()
    for k, v in bb.state_dict().items():
        if k != "mask_token":
            assert torch.equal(v, ref[k]), k
    rnd = build_backbone("random", "echocare_swin_debug", 64)
    assert not torch.equal(rnd.patch_embed.proj.weight, ref["patch_embed.proj.weight"])
    with pytest.raises(FileNotFoundError, match="model.init"):
        build_backbone("nope.safetensors", "echocare_swin_debug", 64)


def test_layer_decay_groups_and_linear_probe(exported):
    bb = build_backbone(str(exported[0]), "echocare_swin_debug", 64)
    model = build_finetune_model(bb, "classification", head_arguments("classification", 3, False))
    task = FinetuneTask(model, layer_decay=0.5)
    groups = build_param_groups(task, 0.05, lr_groups=task.lr_groups())  # what the trainer builds
    scale = {n.removeprefix("model."): g["lr_scale"] for g in groups for n in g["names"]}
    assert scale["head.fc.weight"] == 1.0
    assert scale["backbone.patch_embed.proj.weight"] < scale["backbone.layers.0.blocks.0.mlp.fc1.weight"] \
        < scale["backbone.layers.3.blocks.0.mlp.fc1.weight"] < 1.0
    wd = {n.removeprefix("model."): g["weight_decay"] for g in groups for n in g["names"]}
    assert wd["head.fc.bias"] == 0.0 and wd["head.fc.weight"] == 0.05
    # one no-weight-decay rule with pretraining: position tables and norms are not decayed
    assert wd["backbone.layers.0.blocks.0.attn.relative_position_bias_table"] == 0.0
    assert wd["backbone.norm.weight"] == 0.0 and wd["backbone.layers.0.blocks.0.mlp.fc1.weight"] == 0.05
    assert "backbone.mask_token" not in scale
    # the deepest block (and the final norm) get layer_decay ** 1, the patch embedding layer_decay ** n
    assert scale["backbone.layers.3.blocks.0.mlp.fc1.weight"] == 0.5
    assert scale["backbone.norm.weight"] == 0.5
    n_blocks = sum(len(s.blocks) for s in bb.layers)
    assert scale["backbone.patch_embed.proj.weight"] == 0.5 ** (n_blocks + 1)
    probe = build_finetune_model(build_backbone("random", "echocare_swin_debug", 64), "classification",
                                 head_arguments("classification", 3, False), linear_probe=True)
    names = [n for g in FinetuneTask(probe).lr_groups() for n in g["names"]]
    assert names and all(n.startswith("model.head.") for n in names)


def test_task_loss_backward_and_save_load_roundtrip(exported, tmp_path):
    bb = build_backbone(str(exported[0]), "echocare_swin_debug", 64, drop_path_rate=0.0)
    model = build_finetune_model(bb, "segmentation", head_arguments("segmentation", 3, False, {"feature_size": 8}))
    task = FinetuneTask(model)
    batch = {"image": torch.rand(2, 1, 64, 64), "mask": torch.randint(0, 3, (2, 64, 64))}
    out = task(batch)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and all(p.grad is not None for p in model.head.parameters())
    path = save_finetuned(model, tmp_path / "m.safetensors", {"task": "segmentation", "class_names": ["bg", "a", "b"],
                                                             "head_args": head_arguments("segmentation", 3, False,
                                                                                         {"feature_size": 8}),
                                                             "config": {}})
    loaded, meta = load_finetuned(path)
    model.eval()
    x = torch.rand(1, 1, 64, 64)
    assert torch.allclose(loaded(x)["logits"], model(x)["logits"], atol=1e-5)
    assert meta["class_names"] == ["bg", "a", "b"]
    with pytest.raises(ValueError, match="not an echocare fine-tuned"):
        load_finetuned(exported[0])


def test_metrics_per_task():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 40)
    probs = np.eye(3)[y] * 0.7 + 0.1
    rep = compute_metrics("classification", {"probs": list(probs), "labels": list(y)}, ["a", "b", "c"],
                          n_bootstrap=20)
    assert rep["accuracy"] == 1.0 and rep["macro_f1"] == 1.0 and rep["auc"] == 1.0 and "ci" in rep
    vid = compute_metrics("video", {"probs": [np.array([0.8, 0.2]), np.array([0.4, 0.6]), np.array([0.1, 0.9])],
                                    "labels": [0, 0, 1], "video": ["v1", "v1", "v2"]}, ["n", "a"], ci=False)
    assert vid["n"] == 2 and vid["accuracy"] == 1.0 and vid["n_clips"] == 3
    lm = compute_metrics("landmarks", {"points": [np.array([[10.0, 10.0], [0, 0]])],
                                       "gt": [np.array([[13.0, 14.0], [np.nan, np.nan]])]}, [])
    assert lm["mre"] == pytest.approx(5.0) and lm["sdr"]["10"] == 1.0 and lm["n_hidden"] == 1
    assert set(headline("landmarks", lm)) == {"mse", "mre", "sdr.2", "sdr.4", "sdr.10"}
    det = compute_metrics("detection", {"preds": [{"boxes": np.array([[0, 0, 10, 10.0]]), "scores": np.array([0.9]),
                                                   "labels": np.array([0])}],
                                        "targets": [{"boxes": np.array([[0, 0, 10, 10.0]]), "labels": np.array([0])}]},
                          ["heart"])
    assert det["map"] == pytest.approx(1.0) and det["map50"] == pytest.approx(1.0)
    reg = compute_metrics("regression", {"pred": [np.array([1.0]), np.array([3.0])],
                                         "gt": [np.array([2.0]), np.array([3.0])]}, ["value"])
    assert reg["mae"] == pytest.approx(0.5)
