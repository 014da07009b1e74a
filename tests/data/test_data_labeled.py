"""Labeled dataset formats parse, resize and report bad inputs (tiny files written in tmp_path)."""

import json

import numpy as np
import pytest
import torch
from PIL import Image

from echocare.data.labeled import EpochLoader, LabeledDataset, ScanOptions, scan_dataset
from echocare.data.labeled import readers as R
from echocare.data.labeled import scan as S


def _png(path, h=40, w=60, value=None, seed=0):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 255, (h, w), dtype=np.uint8) if value is None else value
    Image.fromarray(arr).save(path)
    return path


def test_class_folders_skip_bad_files_and_load_gray_unit_range(tmp_path):
    for c in ("benign", "malignant"):
        for i in range(3):
            _png(tmp_path / c / f"p{i}_{c}.png", seed=i)
    (tmp_path / "benign" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (tmp_path / "malignant" / "notes.txt").write_text("x")
    Image.fromarray(np.full((30, 30, 3), 200, np.uint8)).save(tmp_path / "malignant" / "rgb.jpg")
    s = scan_dataset(S.scan_classification, tmp_path)
    assert s.class_names == ["benign", "malignant"] and s.num_outputs == 2
    assert len(s.records) == 7
    assert s.skips.by_reason() == {"corrupt-image": 1, "unsupported-suffix": 1}
    ds = LabeledDataset(s.records, R.read_class, 32)
    item = ds[[r.path for r in s.records].index("malignant/rgb.jpg")]
    assert item["image"].shape == (1, 32, 32) and item["label"].item() == 1
    assert torch.allclose(item["image"], torch.full_like(item["image"], 200 / 255), atol=1e-3)


def test_class_folders_exclude_masks_next_to_the_images_and_warn_while_they_are_in(tmp_path, caplog):
    for c in ("benign", "normal"):  # BUSI: each image's mask sits next to it in the class folder
        for i in range(2):
            _png(tmp_path / c / f"{c} ({i}).png", seed=i)
            _png(tmp_path / c / f"{c} ({i})_mask.png", value=np.zeros((40, 60), np.uint8))
        _png(tmp_path / c / f"{c} (0)_mask_1.png", value=np.zeros((40, 60), np.uint8))  # a second lesion
    with caplog.at_level("WARNING"):
        s = scan_dataset(S.scan_classification, tmp_path)
    assert len(s.records) == 10  # the masks are read as images of their class ...
    assert "6 file(s) in the class folders are named like masks" in caplog.text  # ... and that is said
    caplog.clear()
    with caplog.at_level("INFO"):
        s = scan_dataset(S.scan_classification, tmp_path, ScanOptions(exclude=["*_mask*"]))
    assert sorted(r.path for r in s.records) == ["benign/benign (0).png", "benign/benign (1).png",
                                                 "normal/normal (0).png", "normal/normal (1).png"]
    assert "left out 6 file(s)" in caplog.text and "named like masks" not in caplog.text
    assert s.skips.count == 0  # a deliberate exclusion is not a bad input
    s = scan_dataset(S.scan_classification, tmp_path, ScanOptions(exclude=["normal/*"]))  # a path glob
    assert s.class_names == ["benign", "normal"] and {r.target for r in s.records} == {0}
    s = scan_dataset(S.scan_classification, tmp_path, ScanOptions(exclude=["**/*_MASK*.png"]))  # manifest style
    assert len(s.records) == 4
    s = scan_dataset(S.scan_classification, tmp_path, ScanOptions(exclude=["*/*(0)*"]))  # * stays in one name
    assert sorted(r.path for r in s.records) == ["benign/benign (1).png", "benign/benign (1)_mask.png",
                                                 "normal/normal (1).png", "normal/normal (1)_mask.png"]


def test_classification_csv_with_groups_and_unknown_class(tmp_path):
    for i in range(4):
        _png(tmp_path / "images" / f"img{i}.png")
    (tmp_path / "labels.csv").write_text(
        "image,label,patient\nimg0.png,0,A\nimg1.png,1,A\nimg2.png,1,B\nimg3.png,7,B\nmissing.png,0,C\n,1,D\n")
    s = scan_dataset(S.scan_classification, tmp_path, ScanOptions(classes=["0", "1"]))
    assert [r.target for r in s.records] == [0, 1, 1]
    assert [r.group for r in s.records] == ["A", "A", "B"]
    assert s.skips.by_reason() == {"unknown-class": 1, "missing-file": 1, "empty-field": 1}
    s2 = scan_dataset(S.scan_classification, tmp_path / "labels.csv")  # the CSV itself as root
    assert s2.class_names == ["0", "1", "7"]


def test_segmentation_masks_nearest_and_flip(tmp_path):
    mask = np.zeros((40, 60), np.uint8)
    mask[10:20, 5:25] = 2
    mask[25:35, 40:55] = 1
    _png(tmp_path / "images" / "a.png")
    _png(tmp_path / "masks" / "a.png", value=mask)
    _png(tmp_path / "images" / "b.png")  # no mask
    _png(tmp_path / "masks" / "c.png", value=mask)  # no image
    s = scan_dataset(S.scan_segmentation, tmp_path)
    assert s.num_outputs == 3 and len(s.records) == 1
    assert s.skips.by_reason() == {"no-mask": 1, "mask-without-image": 1}
    item = LabeledDataset(s.records, R.read_mask, 32)[0]
    assert item["mask"].dtype == torch.long and set(item["mask"].unique().tolist()) == {0, 1, 2}
    flipped = LabeledDataset(s.records, R.read_mask, 32, augment=True, hflip=1.0, intensity=0.0)[0]
    assert torch.equal(flipped["mask"], item["mask"].flip(-1))
    with pytest.raises(ValueError, match=r"masks hold values 2 outside 0..1 .*1 mask\(s\), e.g. masks/a.png"):
        scan_dataset(S.scan_segmentation, tmp_path, ScanOptions(num_classes=2))  # value 2 out of range: one error


@pytest.mark.parametrize("num_classes", [2, None])
def test_binary_masks_stored_0_255_are_two_classes(tmp_path, num_classes, caplog):
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 10:50] = 255
    for name in ("a", "b"):
        _png(tmp_path / "images" / f"{name}.png")
        _png(tmp_path / "masks" / f"{name}.png", value=mask)
    _png(tmp_path / "images" / "c.png")
    _png(tmp_path / "masks" / "c.png", value=(mask // 255).astype(np.uint8))  # 0/1 next to 0/255: same classes
    with caplog.at_level("INFO"):
        s = scan_dataset(S.scan_segmentation, tmp_path, ScanOptions(num_classes=num_classes))
    assert s.num_outputs == 2 and len(s.records) == 3 and not s.skips.by_reason()
    assert sum("2 of 3 masks are binary masks stored 0/255" in r.getMessage() for r in caplog.records) == 1
    items = LabeledDataset(s.records, R.read_mask, 32)
    for i in range(3):
        assert set(items[i]["mask"].unique().tolist()) == {0, 1}


def test_unexpected_mask_values_are_one_error_listing_them(tmp_path):
    mask = np.zeros((20, 20), np.uint8)
    mask[:5] = 128
    mask[5:10] = 255
    _png(tmp_path / "images" / "a.png", 20, 20)
    _png(tmp_path / "masks" / "a.png", value=mask)
    with pytest.raises(ValueError, match=r"masks hold values 128, 255 outside 0..1"):
        scan_dataset(S.scan_segmentation, tmp_path, ScanOptions(num_classes=2))
    with pytest.raises(ValueError, match=r"masks hold values 0, 128, 255 that are not class ids"):
        scan_dataset(S.scan_segmentation, tmp_path)


@pytest.mark.parametrize("num_classes", [2, None])
def test_hc18_masks_are_a_two_class_segmentation(tmp_path, num_classes):
    import shutil
    from pathlib import Path

    root = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "hc18_256"
    if not (root / "masks").is_dir():
        pytest.skip("shared HC18 data not present")
    for name in sorted(p.name for p in (root / "masks").iterdir())[:6]:  # real 0/255 masks, a handful
        for sub in ("images", "masks"):
            (tmp_path / sub).mkdir(exist_ok=True)
            shutil.copy(root / sub / name, tmp_path / sub / name)
    assert set(np.unique(np.asarray(Image.open(tmp_path / "masks" / name))).tolist()) == {0, 255}
    s = scan_dataset(S.scan_segmentation, tmp_path, ScanOptions(num_classes=num_classes))
    assert s.num_outputs == 2 and len(s.records) == 6 and not s.skips.by_reason()
    item = LabeledDataset(s.records, R.read_mask, 64)[0]
    assert set(item["mask"].unique().tolist()) == {0, 1}


def test_coco_detection_boxes_scaled_and_flipped(tmp_path):
    _png(tmp_path / "images" / "a.png", h=100, w=200)
    _png(tmp_path / "images" / "b.png", h=100, w=200)
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 200, "height": 100},
                       {"id": 2, "file_name": "b.png", "width": 200, "height": 100},
                       {"id": 3, "file_name": "gone.png"}],
            "categories": [{"id": 5, "name": "heart"}, {"id": 9, "name": "thorax"}],
            "annotations": [{"id": 1, "image_id": 1, "category_id": 9, "bbox": [20, 10, 100, 50]},
                            {"id": 2, "image_id": 1, "category_id": 5, "bbox": [0, 0, -1, 5]},
                            {"id": 3, "image_id": 1, "category_id": 4, "bbox": [0, 0, 5, 5]}]}
    (tmp_path / "annotations.json").write_text(json.dumps(coco))
    s = scan_dataset(S.scan_detection, tmp_path)
    assert s.class_names == ["heart", "thorax"] and len(s.records) == 2
    assert s.skips.by_reason() == {"missing-file": 1, "bad-bbox": 1, "unknown-category": 1}
    a = LabeledDataset(s.records, R.read_boxes, 64)[0]
    assert torch.allclose(a["boxes"], torch.tensor([[6.4, 6.4, 38.4, 38.4]]))
    assert a["labels"].tolist() == [1] and torch.allclose(a["scale"], torch.tensor([200 / 64, 100 / 64]))
    f = LabeledDataset(s.records, R.read_boxes, 64, augment=True, hflip=1.0, intensity=0.0)[0]
    assert torch.allclose(f["boxes"], torch.tensor([[64 - 38.4, 6.4, 64 - 6.4, 38.4]]))
    batch = next(iter(EpochLoader(LabeledDataset(s.records, R.read_boxes, 64), 2, shuffle=False)))
    assert isinstance(batch["boxes"], list) and batch["image"].shape == (2, 1, 64, 64)


def test_landmark_and_regression_csv(tmp_path):
    _png(tmp_path / "a.png", h=50, w=100)
    _png(tmp_path / "b.png", h=50, w=100)
    (tmp_path / "lm.csv").write_text("image,x1,y1,x2,y2\na.png,10,20,99,49\nb.png,5,5,,\nc.png,1,1,1,1\n")
    s = scan_dataset(S.scan_landmarks, tmp_path, ScanOptions(csv="lm.csv"))
    assert s.num_outputs == 2 and len(s.records) == 2 and s.skips.by_reason() == {"missing-file": 1}
    ds = LabeledDataset(s.records, R.read_points, 50, augment=True, hflip=1.0, hflip_safe=False)
    assert ds.hflip == 0.0  # not label-safe
    a, b = ds[0], ds[1]
    assert torch.allclose(a["points"][1], torch.tensor([(99.5) / 2 - 0.5, 49.0]))
    assert b["visible"].tolist() == [1.0, 0.0]
    (tmp_path / "ef.csv").write_text("image,value\na.png,55.5\nb.png,oops\n")
    r = scan_dataset(S.scan_regression, tmp_path, ScanOptions(csv="ef.csv"))
    assert r.num_outputs == 1 and r.records[0].target == [55.5] and r.skips.by_reason() == {"not-a-number": 1}
    assert LabeledDataset(r.records, R.read_values, 32)[0]["value"].tolist() == [55.5]


def _mp4(path, frames, size=32):
    import av

    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as c:
        st = c.add_stream("mpeg4", rate=10)
        st.width = st.height = size
        st.pix_fmt = "yuv420p"
        for i in range(frames):
            img = np.full((size, size, 3), (i * 20) % 255, np.uint8)
            for pkt in st.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                c.mux(pkt)
        for pkt in st.encode():
            c.mux(pkt)


def test_video_class_folders_mp4_and_frame_folders(tmp_path):
    _mp4(tmp_path / "normal" / "v1.mp4", 10)
    _mp4(tmp_path / "normal" / "short.mp4", 3)
    for i in range(5):
        _png(tmp_path / "abnormal" / "case7" / f"{i:03d}.png", h=20, w=20, value=np.full((20, 20), i * 40, np.uint8))
    (tmp_path / "abnormal" / "bad.avi").write_bytes(b"not a video")
    s = scan_dataset(S.scan_video, tmp_path, ScanOptions(clip_len=4))
    assert s.temporal and s.class_names == ["abnormal", "normal"]
    assert [(r.path, r.extra["start"]) for r in s.records] == [("abnormal/case7", 0), ("normal/v1.mp4", 0),
                                                               ("normal/v1.mp4", 4)]
    assert s.skips.by_reason() == {"not-a-video": 1, "video-shorter-than-clip": 1}
    ds = LabeledDataset(s.records, R.read_clip, 32, clip_len=4)
    clip = ds[0]["image"]
    assert clip.shape == (4, 1, 32, 32)
    assert torch.allclose(clip[:, 0, 5, 5], torch.tensor([0, 40, 80, 120]) / 255, atol=1e-3)
    later = ds[2]["image"]
    assert later.shape == (4, 1, 32, 32) and later.mean() > ds[1]["image"].mean()


def test_epoch_loader_resumes_exactly(tmp_path):
    for i in range(10):
        _png(tmp_path / "c" / f"{i}.png", h=8, w=8, value=np.full((8, 8), i * 20, np.uint8))
    s = scan_dataset(S.scan_classification, tmp_path)
    ds = LabeledDataset(s.records, R.read_class, 8)
    full = EpochLoader(ds, 3, seed=1)
    order = [b["index"].tolist() for _ in range(2) for b in full]
    part = EpochLoader(ds, 3, seed=1)
    it = iter(part)
    first = [next(it)["index"].tolist()]
    resumed = EpochLoader(ds, 3, seed=1)
    resumed.load_state_dict(part.state_dict())
    rest = [b["index"].tolist() for b in resumed] + [b["index"].tolist() for b in resumed]
    assert first + rest == order and len(order) == 6


def test_gray_conversion_16bit_rgb_and_rgb_mask_rejected(tmp_path):
    from echocare.data.labeled.media import load_gray, load_mask, to_unit_gray
    from echocare.data.sources import SourceError

    Image.fromarray(np.full((4, 4), 65535 // 2, np.uint16)).save(tmp_path / "a16.png")
    assert np.allclose(load_gray(tmp_path / "a16.png"), 0.5, atol=1e-4)
    rgb = np.zeros((2, 2, 3), np.uint8)
    rgb[..., 1] = 255
    assert np.allclose(to_unit_gray(rgb), 0.587, atol=1e-3)
    bad = np.zeros((4, 4, 3), np.uint8)
    bad[0, 0] = (1, 2, 3)
    Image.fromarray(bad).save(tmp_path / "m.png")
    with pytest.raises(SourceError, match="grayscale"):
        load_mask(tmp_path / "m.png")


def test_weighted_epoch_loader_is_balanced_deterministic_and_resumable():
    class Ids(torch.utils.data.Dataset):
        def __len__(self):
            return 40

        def __getitem__(self, i):
            return {"index": i}

    labels = [0] * 36 + [1] * 4  # 9:1 imbalance
    counts = {0: 36, 1: 4}
    weights = [1.0 / counts[y] for y in labels]

    def epoch_items(loader):
        return [i for b in loader for i in b["index"].tolist()]

    loader = EpochLoader(Ids(), 4, seed=3, weights=weights)
    drawn = [i for _ in range(10) for i in epoch_items(loader)]
    minority = sum(labels[i] for i in drawn) / len(drawn)
    assert 0.4 < minority < 0.6  # each class about equally likely (unweighted: 0.1)
    a, b = EpochLoader(Ids(), 4, seed=3, weights=weights), EpochLoader(Ids(), 4, seed=3, weights=weights)
    first = epoch_items(a)
    it = iter(b)
    next(it), next(it)
    resumed = EpochLoader(Ids(), 4, seed=3, weights=weights)
    resumed.load_state_dict(b.state_dict())
    assert epoch_items(resumed) == first[8:]
    with pytest.raises(ValueError, match="weights must be 40"):
        EpochLoader(Ids(), 4, weights=[1.0] * 3)


def test_positive_class_of_a_binary_task_is_chosen_and_logged(tmp_path, caplog):
    from echocare.errors import DataError

    for folder, classes in (("two", ("benign", "malignant")), ("three", ("benign", "malignant", "normal"))):
        for c in classes:
            for i in range(2):
                _png(tmp_path / folder / c / f"p{i}.png", seed=i)
    with caplog.at_level("INFO", logger="echocare.data.labeled.scan"):
        default = scan_dataset(S.scan_classification, tmp_path / "two")
    assert default.class_names == ["benign", "malignant"]  # today's behaviour: the second in label order
    assert "positive class 'malignant'" in caplog.text
    chosen = scan_dataset(S.scan_classification, tmp_path / "two", ScanOptions(positive_class="benign"))
    assert chosen.class_names == ["malignant", "benign"]
    assert {r.path: r.target for r in chosen.records}["benign/p0.png"] == 1
    assert {r.path: r.target for r in chosen.records}["malignant/p0.png"] == 0
    with pytest.raises(DataError, match="not one of the classes"):
        scan_dataset(S.scan_classification, tmp_path / "two", ScanOptions(positive_class="cancer"))
    with pytest.raises(DataError, match="contradicts data.classes"):
        scan_dataset(S.scan_classification, tmp_path / "two",
                     ScanOptions(classes=["benign", "malignant"], positive_class="benign"))
    with pytest.raises(DataError, match="for binary tasks; the data has 3 classes"):
        scan_dataset(S.scan_classification, tmp_path / "three", ScanOptions(positive_class="benign"))


def test_data_exclude_reaches_the_scan_and_is_validated(tmp_path):
    from echocare.config import ConfigError, load_config
    from echocare.config.finetune import FinetuneConfig
    from echocare.jobs.finetune import scan_options

    cfg = load_config(FinetuneConfig, None, ["data.root=x", "data.exclude=['*_mask*']"])
    assert scan_options(cfg).exclude == ["*_mask*"]
    with pytest.raises(ConfigError, match="data.exclude"):
        load_config(FinetuneConfig, None, ["data.root=x", "data.exclude=['']"])


def test_workers_kept_across_epochs_give_the_in_process_batches_and_stop_on_close(tmp_path):
    import multiprocessing

    for i in range(10):
        _png(tmp_path / ("a" if i % 2 else "b") / f"{i}.png", h=16, w=16, seed=i)
    s = scan_dataset(S.scan_classification, tmp_path)
    ds = LabeledDataset(s.records, R.read_class, 16, augment=True, intensity=0.3, hflip=0.5, rotate=15)

    def epochs(loader, n):
        return [(b["index"].tolist(), b["image"]) for _ in range(n) for b in loader]

    reference = epochs(EpochLoader(ds, 4, seed=2), 3)  # in this process: set_epoch reaches the dataset
    before = set(multiprocessing.active_children())

    def workers():
        return {p for p in multiprocessing.active_children() if p.is_alive() and p not in before}

    kept = EpochLoader(ds, 4, seed=2, num_workers=2)
    got = epochs(kept, 1)
    first_workers = workers()
    got += epochs(kept, 2)
    assert [i for i, _ in got] == [i for i, _ in reference] and len(got) == 6
    for (_, a), (_, b) in zip(got, reference):  # each epoch's augmentation, although the workers' copies
        assert torch.equal(a, b)                  # of the dataset never saw set_epoch
    assert not torch.equal(ds[(0, 3)]["image"], ds[(1, 3)]["image"])  # the augmentation changes with the epoch
    ds.set_epoch(1)
    assert torch.equal(ds[3]["image"], ds[(1, 3)]["image"]) and ds[(1, 3)]["index"] == 3
    ds.set_epoch(0)
    assert len(first_workers) == 2 and workers() == first_workers  # the same two processes for all three epochs
    kept.close()
    assert not any(p.is_alive() for p in first_workers)

    part = EpochLoader(ds, 4, seed=2, num_workers=2)  # resume mid-epoch with kept workers
    it = iter(part)
    first = [next(it)["index"].tolist()]
    state = part.state_dict()
    part.close()
    resumed = EpochLoader(ds, 4, seed=2, num_workers=2)
    resumed.load_state_dict(state)
    rest = [b["index"].tolist() for _ in range(2) for b in resumed]
    resumed.close()
    assert first + rest == [i for i, _ in reference[:4]]
