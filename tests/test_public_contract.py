"""The public contract of shared/DESIGN.md: names exist at the top level and behave as written."""

import pytest
import torch

import echocare


def test_top_level_names_exist():
    for name in ("load_ontology", "list_models", "create_model", "coherent_probs", "load_backbone", "losses"):
        assert hasattr(echocare, name), name
    assert callable(echocare.losses.masked_l1_loss)
    assert callable(echocare.losses.hierarchical_loss)


def test_ontology_contract():
    onto = echocare.load_ontology()
    assert len(onto.names) == len(onto.levels) == len(onto.parents)
    assert "thorax/heart/a4c" in onto.names
    i = onto.names.index("thorax/heart/a4c")
    assert onto.levels[i] == 2
    assert onto.names[onto.parents[i]] == "thorax/heart"
    assert set(onto.levels) == {0, 1, 2}
    assert all(p == -1 for p, lv in zip(onto.parents, onto.levels) if lv == 0)
    vec = onto.encode(["thorax/heart/a4c"], label_space=["thorax/heart/a2c"])
    assert vec.shape == (len(onto.names),) and vec.dtype == torch.float32
    assert vec[i] == 1 and vec[onto.names.index("thorax")] == 1
    assert vec[onto.names.index("thorax/heart/a2c")] == 0
    assert vec[onto.names.index("abdomen/liver")] == -1


def test_model_contract_forward_and_coherence():
    onto = echocare.load_ontology()
    assert {"echocare_swin_tiny", "echocare_swin_small", "echocare_swin_base", "echocare_swin_large"} <= set(
        echocare.list_models()
    )
    model = echocare.create_model("echocare_swin_debug", ontology=onto, in_chans=1, img_size=64)
    p = model.patch_size
    images = torch.rand(2, 1, 64, 64)
    mask = (torch.rand(2, 64 // p, 64 // p) < 0.5).float()
    targets = torch.stack([onto.encode(["thorax/heart/a4c"]), torch.full((len(onto.names),), -1.0)])
    out = model(images, mask, targets)
    for key in ("loss", "loss_mim", "loss_hie", "recon", "logits"):
        assert key in out, key
    assert out["recon"].shape == images.shape
    assert out["logits"].shape == (2, len(onto.names))
    torch.testing.assert_close(out["loss"], out["loss_mim"] + out["loss_hie"])
    probs = echocare.coherent_probs(torch.randn(16, len(onto.names)) * 4, onto)
    parents = torch.tensor(onto.parents)
    child = torch.nonzero(parents >= 0).squeeze(1)
    assert bool((probs[:, child] <= probs[:, parents[child]]).all())


def test_unlabeled_batch_is_mim_only():
    onto = echocare.load_ontology()
    model = echocare.create_model("echocare_swin_debug", ontology=onto, in_chans=1, img_size=64)
    mask = torch.ones(1, 64 // model.patch_size, 64 // model.patch_size)
    out = model(torch.rand(1, 1, 64, 64), mask, None)
    assert float(out["loss_hie"].detach()) == 0.0
    torch.testing.assert_close(out["loss"], out["loss_mim"])


def test_cli_lists_every_verb(capsys):
    from echocare.cli import main

    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    text = capsys.readouterr().out
    for verb in ("shards", "pretrain", "export", "finetune", "evaluate", "quickstart"):
        assert verb in text, verb
