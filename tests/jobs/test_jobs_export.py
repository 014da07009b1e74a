"""echocare.jobs.export: run dir / checkpoint -> safetensors that stock timm loads without echocare."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from torch import nn

import echocare
from echocare.jobs.export import export_encoder, resolve_checkpoint
from echocare.models import create_encoder, create_model

MODEL = {"name": "echocare_swin_debug", "img_size": 64, "patch_size": 4, "window_size": 4, "in_chans": 1,
         "decoder": "simmim", "ontology": None}


class _Task(nn.Module):
    """Stand-in for a training task: the engine checkpoints the task, so keys are 'model.encoder.*'."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


def _model() -> nn.Module:
    torch.manual_seed(0)
    kw = {k: v for k, v in MODEL.items() if k not in ("name", "ontology")}
    return create_model(MODEL["name"], ontology=echocare.load_ontology(), drop_path_rate=0.0, **kw)


def _write_run(root: Path, model: nn.Module, safe: bool = True, step: int = 10) -> Path:
    """A run dir laid out like the trainer's: config.yaml + checkpoints/step-N/{model.safetensors, COMPLETE}."""
    (root / "checkpoints").mkdir(parents=True, exist_ok=True)
    (root / "config.yaml").write_text(yaml.safe_dump({"model": MODEL, "train": {"max_steps": step}}))
    ckpt = root / "checkpoints" / f"step-{step:08d}"
    ckpt.mkdir()
    state = _Task(model).state_dict()
    if safe:
        save_file({k: v.clone().contiguous() for k, v in state.items()}, str(ckpt / "model.safetensors"),
                  {"format": "pt"})
    else:
        torch.save(state, ckpt / "pytorch_model.bin")
    (ckpt / "trainer_state.json").write_text(json.dumps({"step": step}))
    (ckpt / "COMPLETE").write_text(f"{step}\n")
    return root


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    model = _model().eval()
    with torch.no_grad():  # move away from init so a silently re-initialised tensor would show
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    run = _write_run(tmp_path_factory.mktemp("run"), model)
    return model, run


_STOCK = r"""
import json, sys
sys.modules["echocare"] = None  # any `import echocare` now raises ImportError
import timm, torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
try:
    import echocare
    raise SystemExit("echocare importable")
except ImportError:
    pass
path, x_path, out = sys.argv[1:4]
with safe_open(path, framework="pt") as f:
    meta = f.metadata()
model = timm.create_model(meta["architecture"], pretrained=False, **json.loads(meta["model_args"]))
model.load_state_dict(load_file(path), strict=True)
model.eval()
x = load_file(x_path)["x"]
with torch.no_grad():
    final, inter = model.forward_intermediates(x)
save_file({"final": final.contiguous(), **{f"s{i}": t.contiguous() for i, t in enumerate(inter)}}, out)
"""


def test_export_loads_in_stock_timm_without_echocare(trained, tmp_path: Path) -> None:
    model, run = trained
    out = export_encoder(run, tmp_path / "enc.safetensors")
    with safe_open(str(out), framework="pt") as f:
        meta = f.metadata()
        keys = set(f.keys())
    assert meta["format"] == "echocare-encoder" and "mask_token" not in keys
    assert json.loads(meta["config"])["model"]["name"] == "echocare_swin_debug"
    onto = echocare.load_ontology()
    assert json.loads(meta["ontology"]) == onto.names and meta["ontology_hash"] == onto.hash
    assert meta["echocare_version"] == echocare.__version__

    x = torch.rand(2, 1, 64, 64)
    save_file({"x": x}, str(tmp_path / "x.safetensors"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    proc = subprocess.run([sys.executable, "-I", "-c", _STOCK, str(out), str(tmp_path / "x.safetensors"),
                           str(tmp_path / "feats.safetensors")], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    feats = load_file(str(tmp_path / "feats.safetensors"))
    with torch.no_grad():
        final, inter = model.encoder.forward_intermediates(x)
    torch.testing.assert_close(feats["final"], final, atol=1e-5, rtol=1e-5)
    for i, t in enumerate(inter):
        torch.testing.assert_close(feats[f"s{i}"], t, atol=1e-5, rtol=1e-5)


def test_full_export_round_trip(trained, tmp_path: Path) -> None:
    model, run = trained
    out = export_encoder(run / "checkpoints" / "step-00000010", tmp_path / "full.safetensors", full=True)
    with safe_open(str(out), framework="pt") as f:
        assert f.metadata()["format"] == "echocare-full"
    fresh = _model()
    fresh.load_state_dict(load_file(str(out)), strict=True)
    for name, tensor in model.state_dict().items():
        assert torch.equal(fresh.state_dict()[name], tensor), name
    assert any(k.startswith("decoder.") for k in load_file(str(out)))
    assert any(k.startswith("classifier.") for k in load_file(str(out)))


def test_pytorch_model_bin_and_newest_complete_checkpoint(tmp_path: Path) -> None:
    old, new = _model(), _model()
    with torch.no_grad():
        new.encoder.patch_embed.proj.weight.fill_(0.5)
    run = _write_run(tmp_path / "run", old, safe=True, step=5)
    _write_run(run, new, safe=False, step=20)
    incomplete = run / "checkpoints" / "step-00000030"
    incomplete.mkdir()
    (incomplete / "model.safetensors").write_bytes(b"partial")  # no COMPLETE marker: must be ignored
    weights, config = resolve_checkpoint(run)
    assert weights == run / "checkpoints" / "step-00000020" / "pytorch_model.bin" and config == run / "config.yaml"
    out = export_encoder(run, tmp_path / "enc.safetensors")
    assert torch.all(load_file(str(out))["patch_embed.proj.weight"] == 0.5)


def test_errors_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="does not exist"):
        export_encoder(tmp_path / "nope", tmp_path / "o.safetensors")
    empty = tmp_path / "run" / "checkpoints" / "step-00000001"
    empty.mkdir(parents=True)
    (empty / "optimizer.bin").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="holds no model weights"):
        export_encoder(empty, tmp_path / "o.safetensors")
    (empty / "pytorch_model").mkdir()
    (empty / "pytorch_model" / "mp_rank_00_model_states.pt").write_bytes(b"")
    with pytest.raises(FileNotFoundError, match="DeepSpeed checkpoint.*zero_to_fp32"):
        export_encoder(empty, tmp_path / "o.safetensors")
    no_swin = tmp_path / "other.safetensors"
    save_file({"fc.weight": torch.zeros(2, 2)}, str(no_swin))
    with pytest.raises(ValueError, match="no Swin encoder weights"):
        export_encoder(no_swin, tmp_path / "o.safetensors")
    with pytest.raises(ValueError, match="must end in .safetensors"):
        export_encoder(no_swin, tmp_path / "o.pt")


def test_cli_export(trained, tmp_path: Path, capsys) -> None:
    from echocare.cli import main

    _, run = trained
    out = tmp_path / "cli.safetensors"
    assert main(["export", str(run), "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    assert "patch_embed.proj.weight" in load_file(str(out))
    assert main(["export", str(tmp_path / "missing"), "--out", str(out)]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_export_writes_model_card_with_sonomqs(trained, tmp_path: Path) -> None:
    """Model card next to the export (echocare.catalog.model_card) and its criteria in the metadata."""
    from echocare.catalog import SONOMQS_CRITERIA

    _, run = trained
    out = export_encoder(run, tmp_path / "enc.safetensors")
    card = tmp_path / "enc.model-card.md"
    with safe_open(str(out), framework="pt") as f:
        crit = json.loads(f.metadata()["sonomqs"])
    assert set(crit) == set(SONOMQS_CRITERIA) and crit["training_details"] and not crit["training_data_public"]
    text = card.read_text()
    assert "echocare_swin_debug" in text and f"SonoMQS = {sum(crit.values())}/12" in text


def test_export_of_a_standalone_file_uses_its_own_model_args(tmp_path: Path) -> None:
    """A bare weights file (no run dir, no config.yaml) keeps its recorded image size, not 256 px."""
    torch.manual_seed(0)
    enc = create_encoder("echocare_swin_debug", img_size=64, patch_size=4, window_size=4, drop_path_rate=0.0)
    src = tmp_path / "alone" / "full.safetensors"
    src.parent.mkdir()
    save_file({f"encoder.{k}": v.contiguous() for k, v in enc.state_dict().items()}, str(src),
              {"format": "echocare-full", "architecture": enc.timm_architecture,
               "model_args": json.dumps(enc.timm_kwargs)})
    out = export_encoder(src, tmp_path / "enc.safetensors")
    with safe_open(str(out), "pt") as f:
        args = json.loads(f.metadata()["model_args"])
    assert args["img_size"] == [64, 64] and args["window_size"] == 4
    assert echocare.load_backbone(out).patch_embed.img_size == (64, 64)


@pytest.mark.parametrize("value", [float("nan"), float("inf")])
def test_export_refuses_nonfinite_weights(tmp_path: Path, value: float) -> None:
    from echocare.engine import NonFiniteWeightsError

    model = _model()
    with torch.no_grad():
        model.encoder.layers[0].blocks[0].mlp.fc1.weight[0, 0] = value
    run = _write_run(tmp_path / "run", model)
    with pytest.raises(NonFiniteWeightsError, match=r"1 tensor\(s\) hold NaN or infinite values \(layers.0.blocks.0"):
        export_encoder(run, tmp_path / "enc.safetensors")
    assert not (tmp_path / "enc.safetensors").exists()
