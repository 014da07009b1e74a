"""StepWindow: what one metrics.jsonl line averages."""

import math

import torch

from echocare.engine.state import StepWindow


def test_means_average_over_micro_batches() -> None:
    w = StepWindow()
    w.add(torch.tensor(1.0), {"loss_mim": torch.tensor(0.5), "acc": 1})
    w.add(torch.tensor(3.0), {"loss_mim": torch.tensor(1.5), "acc": 0})
    values = w.means(torch.device("cpu"), None)
    assert w.n == 2
    assert values == {"acc": 0.5, "loss": 2.0, "loss_mim": 1.0}


def test_means_divide_by_the_count_of_all_ranks() -> None:
    # another rank logged a loss sum of 5.0 over 3 micro-batches: the sum over ranks adds its sums, then its count
    other_rank = [torch.tensor([5.0]), torch.tensor([3.0])]
    w = StepWindow()
    w.add(torch.tensor(4.0), {})
    values = w.means(torch.device("cpu"), lambda t: t + other_rank.pop(0))
    assert values["loss"] == (4.0 + 5.0) / (1 + 3)
    assert not other_rank


def test_empty_window_reports_nan_loss() -> None:
    values = StepWindow().means(torch.device("cpu"), None)
    assert math.isnan(values["loss"]) and list(values) == ["loss"]
