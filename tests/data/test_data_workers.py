"""DataLoader workers of both loaders run one intra-op thread."""

from __future__ import annotations

import torch

from echocare.data.labeled import EpochLoader
from echocare.data.loader import PretrainStream, make_pretrain_loader
from echocare.data.workers import worker_init
from test_data_loader import write_shards  # same folder (pytest prepends it to sys.path)


def test_worker_init_sets_one_thread():
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        worker_init(0)
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


class _ThreadReport(torch.utils.data.Dataset):
    """Each item reports the intra-op threads of the process that loaded it."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict:
        return {"threads": torch.get_num_threads(), "index": i}


def test_epoch_loader_workers_run_one_thread():
    loader = EpochLoader(_ThreadReport(), batch_size=2, shuffle=False, num_workers=2, drop_last=False)
    batches = list(loader)
    assert sorted(int(i) for b in batches for i in b["index"]) == [0, 1, 2, 3]
    assert all(int(t) == 1 for b in batches for t in b["threads"])


class _ThreadStream(PretrainStream):
    """A real shard stream whose batches also carry the worker's intra-op thread count."""

    def collate(self, images, keys, datasets, targets, plan, worker, batch_idx):
        out = super().collate(images, keys, datasets, targets, plan, worker, batch_idx)
        out["threads"] = torch.get_num_threads()
        return out


def test_pretrain_loader_workers_run_one_thread(tmp_path):
    urls = write_shards(tmp_path / "s", [6, 6])
    loader = make_pretrain_loader(_ThreadStream(urls, img_size=32, mask_patch_size=8, shuffle_buffer=0),
                                  batch_size=3, num_workers=2)
    batches = list(loader)
    assert sum(len(b["key"]) for b in batches) == 12
    assert [b["threads"] for b in batches] == [1] * len(batches)
