"""Fine-tuning job: budgets in epochs, periodic validation selecting the best weights, class-balanced sampling."""

import json

import pytest
from safetensors import safe_open

from echocare.config import ConfigError, load_config
from echocare.config.finetune import FinetuneConfig
from echocare.data.labeled.examples import make_example_dataset
from echocare.jobs.evaluate import evaluate_checkpoint
from echocare.jobs.finetune import resolve_budget, run_finetune

FAST = ["model.name=echocare_swin_debug", "model.img_size=32", "model.window_size=4", "train.batch_size=4",
        "train.progress=false", "train.tensorboard=false", "train.precision=fp32", "train.log_every=1",
        "data.num_workers=0", "optim.warmup_steps=1", "eval.n_bootstrap=20", r"data.group_regex=(patient\d+)"]


@pytest.fixture(scope="module")
def cls_root(tmp_path_factory):
    return make_example_dataset("classification", tmp_path_factory.mktemp("cls") / "cls", patients=3, frames=2,
                                size=40)


def _cfg(root, *extra):
    return load_config(FinetuneConfig, None, [f"data.root={root}", *FAST, *extra])


def test_budget_in_epochs_or_steps(cls_root):
    assert resolve_budget(_cfg(cls_root), 20, 1) == 1000  # neither given
    assert resolve_budget(_cfg(cls_root, "train.max_steps=7"), 20, 1) == 7
    assert resolve_budget(_cfg(cls_root, "train.epochs=2.5"), 20, 1) == 13  # 5 steps per epoch, rounded up
    assert resolve_budget(_cfg(cls_root, "train.epochs=2", "train.grad_accum=2"), 20, 2) == 2  # 20 / (4*2) // 2
    assert resolve_budget(_cfg(cls_root, "train.epochs=2", "train.max_steps=10"), 20, 1) == 10  # consistent
    with pytest.raises(ConfigError, match=r"train.max_steps=12 and train.epochs=2 \(= 10 steps"):
        resolve_budget(_cfg(cls_root, "train.epochs=2", "train.max_steps=12"), 20, 1)


def test_periodic_validation_saves_best_weights_and_evaluate_reproduces(cls_root, tmp_path):
    run = tmp_path / "run"
    cfg = _cfg(cls_root, "train.epochs=1", "train.eval_every=1", "data.val_fraction=0.34", "data.balanced=true",
               "eval.select_metric=accuracy")
    summary = run_finetune(cfg, run)
    assert summary["step"] == 3 and cfg.train.max_steps is None  # 12 train items / batch 4; cfg not modified
    vals = [r for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines()) if "val/accuracy" in r]
    assert [r["step"] for r in vals] == [1, 2, 3] and all("val/macro_f1" in r for r in vals)
    best = max(vals, key=lambda r: r["val/accuracy"])  # first of the ties wins: only strict improvements count
    assert summary["best_step"] == best["step"] and summary["selected_on"] == "accuracy"
    assert summary["headline"]["accuracy"] == pytest.approx(best["val/accuracy"])
    with safe_open(str(run / "model.safetensors"), framework="pt") as f:
        assert json.loads(f.metadata()["step"]) == best["step"]
    again = evaluate_checkpoint(run)
    assert again["metrics"] == summary["metrics"]


def test_balanced_needs_classes_and_eval_needs_a_split(tmp_path):
    seg = make_example_dataset("segmentation", tmp_path / "seg", patients=3, frames=1, size=40)
    with pytest.raises(ConfigError, match="data.balanced=true needs a task with classes"):
        run_finetune(_cfg(seg, "task=segmentation", "data.balanced=true", "train.max_steps=1"), tmp_path / "r1")
    with pytest.raises(ConfigError, match="train.eval_every > 0 needs a validation split"):
        run_finetune(_cfg(seg, "task=segmentation", "data.val_fraction=0", "train.eval_every=1",
                          "train.max_steps=1"), tmp_path / "r2")


def test_positive_class_reaches_the_scan_and_is_refused_for_tasks_without_classes(cls_root, tmp_path):
    from echocare.jobs.finetune import prepare_data

    two = ["data.classes=a4c,liver"]  # the example has three classes; other labels are skipped
    assert prepare_data(_cfg(cls_root, *two)).train.class_names == ["a4c", "liver"]
    with pytest.raises(ValueError, match="contradicts data.classes"):
        prepare_data(_cfg(cls_root, *two, "data.positive_class=a4c"))
    assert prepare_data(_cfg(cls_root, *two, "data.positive_class=liver")).train.class_names == ["a4c", "liver"]
    with pytest.raises(ValueError, match="for binary tasks; the data has 3 classes"):
        prepare_data(_cfg(cls_root, "data.positive_class=liver"))
    with pytest.raises(ConfigError, match="data.positive_class is for binary classification"):
        prepare_data(_cfg(tmp_path, "task=segmentation", "data.positive_class=a"))
