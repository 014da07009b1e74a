"""Done-when: fine-tune classification and segmentation through the CLI from an exported encoder,
metrics.json holds accuracy / macro-F1 / AUC / Dice / NSD, `echocare evaluate` reproduces it, and a
2 fractions x 2 seeds protocol writes its table and plot."""

import json

import pytest
from safetensors.torch import save_file

from echocare.cli import main
from echocare.data.labeled.examples import make_example_dataset
from echocare.models import create_encoder

FAST = ["--set", "model.img_size=64", "--set", "train.max_steps=3", "--set", "train.batch_size=4",
        "--set", "data.num_workers=0", "--set", "eval.n_bootstrap=30", "--set", r"data.group_regex=(patient\d+)",
        "--set", "train.progress=false", "--set", "train.tensorboard=false", "--set", "train.log_every=1",
        "--set", "train.precision=fp32", "--set", "optim.warmup_steps=1"]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("ft")
    enc = create_encoder("echocare_swin_debug", img_size=64, window_size=8)
    state = {k: v.contiguous() for k, v in enc.state_dict().items() if k != "mask_token"}
    save_file(state, str(root / "encoder.safetensors"),
              metadata={"format": "echocare-encoder", "architecture": enc.timm_architecture,
                        "model_args": json.dumps(enc.timm_kwargs)})
    make_example_dataset("classification", root / "cls", patients=3, frames=2, size=72)
    make_example_dataset("segmentation", root / "seg", patients=5, frames=2, size=72)
    init = ["--set", f"model.init={root / 'encoder.safetensors'}"]
    assert main(["finetune", "--config", "recipes/finetune/classification.yaml", "--set", f"data.root={root / 'cls'}",
                 "--set", "data.val_fraction=0.34", "--output-dir", str(root / "run_cls"), *init, *FAST]) == 0
    assert main(["finetune", "--config", "recipes/finetune/segmentation.yaml", "--set", f"data.root={root / 'seg'}",
                 "--set", "model.head={feature_size: 8}", "--output-dir", str(root / "run_seg"), *init, *FAST]) == 0
    return root


def test_classification_metrics_json(work):
    doc = json.loads((work / "run_cls" / "metrics.json").read_text())
    m = doc["metrics"]
    for key in ("accuracy", "macro_f1", "auc"):
        assert 0.0 <= m[key] <= 1.0
        assert key in m["ci"]
    assert doc["step"] == 3 and m["n"] == doc["n_items"] == 6
    report = json.loads((work / "run_cls" / "data_report.json").read_text())
    assert report["n_train"] == 12 and report["val_groups"] == 3 and report["skipped"]["skipped"] == 0
    assert (work / "run_cls" / "model.safetensors").is_file() and (work / "run_cls" / "config.yaml").is_file()
    lines = [json.loads(x) for x in (work / "run_cls" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in lines if "loss" in r] == [1, 2, 3]  # log_every=1
    assert [r["step"] for r in lines if "val/accuracy" in r] == [3]  # the recipe's eval_every: the last step


def test_segmentation_metrics_and_evaluate_reproduces(work, tmp_path):
    doc = json.loads((work / "run_seg" / "metrics.json").read_text())
    m = doc["metrics"]
    assert set(m["dice"]) == {"1", "2"} and set(m["nsd"]) == {"1", "2"}
    assert 0.0 <= m["mean_dice"] <= 1.0 and 0.0 <= m["mean_nsd"] <= 1.0
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--checkpoint", str(work / "run_seg"), "--out", str(out), "--device", "cpu"]) == 0
    again = json.loads(out.read_text())
    assert again["split"] == "val" and again["metrics"] == m
    # the exported weights file alone, on a whole dataset root
    assert main(["evaluate", "--checkpoint", str(work / "run_cls" / "model.safetensors"), "--data",
                 str(work / "cls"), "--out", str(tmp_path / "all.json"), "--set", "eval.ci=false"]) == 0
    every = json.loads((tmp_path / "all.json").read_text())
    assert every["split"] == "all" and every["n_items"] == 18 and "macro_f1" in every["metrics"]


def test_bad_config_and_missing_checkpoint_exit_2(work, capsys):
    assert main(["finetune", "--config", "recipes/finetune/classification.yaml", "--set", "data.rot=x"]) == 2
    assert "data.root" in capsys.readouterr().err
    assert main(["evaluate", "--checkpoint", str(work / "nothing")]) == 2


def test_protocol_two_fractions_two_seeds(work):
    out = work / "proto"
    args = ["protocol", "--config", "recipes/finetune/classification.yaml", "--set", f"data.root={work / 'cls'}",
            "--set", f"model.init={work / 'encoder.safetensors'}", "--set", "data.val_fraction=0.34",
            "--set", "eval.ci=false", "--fractions", "0.5,1.0", "--seeds", "2", "--output-dir", str(out), *FAST]
    args[args.index("train.max_steps=3")] = "train.max_steps=1"
    assert main(args) == 0
    table = (out / "protocol.md").read_text()
    assert "50%" in table and "100%" in table and "macro_f1" in table and "±" in table
    summary = json.loads((out / "protocol.json").read_text())["summary"]
    assert summary["0.5"]["accuracy"]["n"] == 2 and len(summary["1"]["auc"]["values"]) == 2
    assert (out / "label_efficiency.png").stat().st_size > 1000
    assert (out / "protocol.csv").read_text().startswith("fraction,metric,mean,std,n")
    n_train = {json.loads((out / f"frac-{p}" / "seed-0" / "data_report.json").read_text())["n_train"]
               for p in ("50", "100")}
    assert n_train == {6, 12}


def test_prepare_data_val_root_kfold_and_fraction(work):
    from echocare.config import load_config
    from echocare.config.finetune import FinetuneConfig
    from echocare.jobs.finetune import prepare_data

    base = [f"data.root={work / 'cls'}", r"data.group_regex=(patient\d+)"]
    folds = [prepare_data(load_config(FinetuneConfig, None, [*base, f"data.fold={k}", "data.num_folds=3"]))
             for k in range(3)]
    assert sorted(i for f in folds for i in f.val_idx) == list(range(18))
    for f in folds:
        assert not {f.groups[i] for i in f.train_idx} & {f.groups[i] for i in f.val_idx}
    explicit = prepare_data(load_config(FinetuneConfig, None, [*base, f"data.val_root={work / 'cls'}",
                                                               "data.train_fraction=0.5"]))
    # label fraction stratified by class: 2 of each class's 3 patients (x 2 frames), every class kept
    assert len(explicit.val_idx) == 18 and len(explicit.train_idx) == 12 and explicit.val is not explicit.train
    assert {explicit.train.records[i].target for i in explicit.train_idx} == {0, 1, 2}
    assert explicit.report()["val_root"] == str(work / "cls")


def test_group_regex_that_does_not_match_exits_2(work, capsys):
    assert main(["finetune", "--set", f"data.root={work / 'cls'}", "--output-dir", str(work / "bad_run"), *FAST,
                 "--set", r"data.group_regex=(case\d+)"]) == 2
    assert "group_regex" in capsys.readouterr().err
