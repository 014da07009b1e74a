"""User errors are one line on stderr and exit code 2, with no traceback (unless `echocare --debug`), and a
rejected pretraining run writes nothing. Each case runs the real CLI in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from safetensors.torch import save_file

from echocare.config.recipes import find_recipe
from echocare.models import create_encoder

REPO = Path(__file__).resolve().parents[2]
DEBUG = str(find_recipe("pretrain/debug.yaml"))
QUIET = ["--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "train.image_every=0",
         "--set", "train.batch_size=4", "--set", "data.num_workers=0"]


def _pickle_payload(path: Path, marker: Path) -> Path:
    """A pickle that would create ``marker`` if anything unpickled it."""
    path.write_bytes(b"cbuiltins\nexec\n(V" + f"open({str(marker)!r}, 'w').write('x')".encode() + b"\ntR.")
    return path


def _encoder_file(path: Path, model_args: dict | None = None) -> Path:
    enc = create_encoder("echocare_swin_debug", img_size=64, window_size=8)
    state = {k: v.contiguous() for k, v in enc.state_dict().items() if k != "mask_token"}
    args = dict(enc.timm_kwargs, **(model_args or {}))
    save_file(state, str(path), metadata={"format": "echocare-encoder", "architecture": enc.timm_architecture,
                                          "model_args": json.dumps(args)})
    return path


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    from echocare.data.phantom import write_phantom_shards

    out = tmp_path_factory.mktemp("phantom")
    write_phantom_shards(out, 16, seed=0, image_size=64, shard_max_count=16)
    return out


def _pretrain(shards, run, *extra):
    return ["pretrain", "--config", DEBUG, "--output-dir", str(run), "--set", f"data.shards={shards}", *QUIET, *extra]


def _case(name: str, tmp: Path, shards: Path) -> tuple[list[str], str]:
    """(argv, text the one-line error must contain) of each user error."""
    run = tmp / "run"
    if name == "unknown-model-name":
        return _pretrain(shards, run, "--set", "model.name=echocare_swin_hugest"), "unknown model"
    if name == "missing-shard-dir":
        return _pretrain(tmp / "no-such-dir", run), "not found"
    if name == "empty-shard-dir":
        (tmp / "empty").mkdir()
        return _pretrain(tmp / "empty", run), "contains no *.tar files"
    if name == "resume-non-checkpoint":
        (tmp / "not-a-ckpt").mkdir()
        return _pretrain(shards, run, "--resume", str(tmp / "not-a-ckpt")), "not a complete checkpoint"
    if name == "nonfinite-abort":  # lr 1e37: weights of ~1e37 after one step overflow the next forward
        return _pretrain(shards, run, "--set", "optim.lr=1e37", "--set", "optim.scale_lr=false",
                         "--set", "optim.warmup_steps=0", "--set", "optim.clip_grad=null", "--set", "train.max_steps=6",
                         "--set", "train.max_nonfinite=1", "--set", "train.precision=fp32"), "non-finite"
    if name == "export-pickle":
        evil = _pickle_payload(tmp / "model.bin", tmp / "payload-ran")
        return ["export", str(evil), "--out", str(tmp / "x.safetensors")], "refused"
    if name == "finetune-init-pickle":
        from echocare.data.labeled.examples import make_example_dataset

        make_example_dataset("classification", tmp / "cls", patients=2, frames=2, size=64)
        evil = _pickle_payload(tmp / "encoder.pt", tmp / "payload-ran")
        return (["finetune", "--config", "recipes/finetune/classification.yaml", "--output-dir", str(run),
                 "--set", f"data.root={tmp / 'cls'}", "--set", f"model.init={evil}", "--set", "model.img_size=64",
                 "--set", "data.val_fraction=0.5", *QUIET], "refused")
    if name == "truncated-safetensors":
        good = _encoder_file(tmp / "enc.safetensors")
        cut = tmp / "cut.safetensors"
        cut.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
        return ["export", str(cut), "--out", str(tmp / "x.safetensors")], "safetensors"
    if name == "unexpected-model-args":
        odd = _encoder_file(tmp / "odd.safetensors", {"exec_me": 1})
        return ["export", str(odd), "--out", str(tmp / "x.safetensors")], "unexpected model_args"
    raise AssertionError(name)


CASES = ["unknown-model-name", "missing-shard-dir", "empty-shard-dir", "resume-non-checkpoint", "nonfinite-abort",
         "export-pickle", "finetune-init-pickle", "truncated-safetensors", "unexpected-model-args"]


def _run(argv, cwd=REPO):
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    # --log-level ERROR: stderr then holds only what the CLI itself reports
    return subprocess.run([sys.executable, "-m", "echocare", "--log-level", "ERROR", *argv], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("name", CASES)
def test_user_error_is_one_line_with_exit_2(name, tmp_path, shards):
    argv, expected = _case(name, tmp_path, shards)
    proc = _run(argv)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    assert len(lines) == 1 and lines[0].startswith(f"echocare {argv[0]}: error: "), proc.stderr
    assert expected in lines[0], lines[0]
    assert not (tmp_path / "payload-ran").exists()
    if name != "nonfinite-abort":
        assert not (tmp_path / "run").exists()  # validated before anything was written


def test_debug_flag_shows_the_traceback(tmp_path, shards):
    argv, _ = _case("unknown-model-name", tmp_path, shards)
    proc = _run(["--debug", *argv])
    assert proc.returncode == 1 and "Traceback" in proc.stderr and "ConfigError" in proc.stderr
