"""Report data: JSONL and CSV readers with counted skips, the corpus tokenizer, model-ready items."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from echocare.data.labeled.reports import (
    ReportDataset,
    ReportTokenizer,
    collate_reports,
    scan_reports,
    write_generated_reports,
)


def _png(path, value: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((20, 24), value, np.uint8)).save(path)


@pytest.fixture
def corpus_dir(tmp_path):
    for name, v in [("a1", 10), ("a2", 20), ("b1", 30), ("c1", 40), ("c2", 50), ("c3", 60)]:
        _png(tmp_path / "images" / f"{name}.png", v)
    (tmp_path / "images" / "bad.png").write_bytes(b"nope")
    lines = [
        {"images": ["a1.png", "a2.png"], "report": "Liver normal. Capsule smooth.", "group": "p1"},
        {"images": "b1.png", "report": "Thyroid nodule, 5.2 mm."},
        "{not json",
        {"images": ["c1.png", "c2.png", "c3.png"], "report": "three images"},
        {"images": ["missing.png"], "report": "x"},
        {"images": ["bad.png"], "report": "x"},
        {"images": ["a1.png"], "report": "   "},
        {"report": "no images key"},
    ]
    text = "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n\n"
    (tmp_path / "reports.jsonl").write_text(text)
    return tmp_path


def test_jsonl_scan_with_counted_skips(corpus_dir):
    data = scan_reports(corpus_dir)
    assert [r.images for r in data.records] == [["images/a1.png", "images/a2.png"], ["images/b1.png"]]
    assert data.records[0].group == "p1" and data.records[1].group is None
    assert data.skips.by_reason() == {"bad-json": 1, "too-many-images": 1, "missing-image": 1, "corrupt-image": 1,
                                      "empty-report": 1, "missing-field": 1}
    assert data.texts[1] == "Thyroid nodule, 5.2 mm."
    out = write_generated_reports(corpus_dir / "eval" / "reports.jsonl", data.records, ["liver ok", "甲状腺"])
    rows = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert rows[1] == {"images": ["images/b1.png"], "reference": "Thyroid nodule, 5.2 mm.", "generated": "甲状腺"}
    with pytest.raises(ValueError, match="2 records but 1"):
        write_generated_reports(out, data.records, ["x"])


def test_csv_form_and_errors(tmp_path):
    _png(tmp_path / "x.png", 1)
    _png(tmp_path / "y.png", 2)
    (tmp_path / "reports.csv").write_text('images,report,patient\nx.png;y.png,"Two views, normal.",7\n,empty,8\n')
    data = scan_reports(tmp_path / "reports.csv")
    assert data.records[0].images == ["x.png", "y.png"] and data.records[0].group == "7"
    assert data.skips.by_reason() == {"no-images": 1}
    with pytest.raises(FileNotFoundError):
        scan_reports(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "reports.jsonl").write_text('{"images": ["q.png"], "report": "a"}\n')
    with pytest.raises(ValueError, match="no usable reports"):
        scan_reports(tmp_path / "empty")


def test_tokenizer_roundtrip_save_load_and_items(corpus_dir, tmp_path):
    data = scan_reports(corpus_dir)
    texts = data.texts * 3 + ["肝脏大小正常，包膜光滑。"] * 3
    tok = ReportTokenizer.train(texts, vocab_size=200, min_frequency=1)
    assert (tok.pad_id, tok.bos_id, tok.eos_id, tok.unk_id) == (0, 1, 2, 3)
    ids = tok.encode("Liver normal. Capsule smooth.", max_len=32)
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids) == "liver normal. capsule smooth."
    assert tok.decode(tok.encode("肝脏大小正常，包膜光滑。", 32)) == "肝脏大小正常,包膜光滑。"  # NFKC comma
    assert len(tok.encode("liver " * 50, max_len=8)) == 8
    tok.save(tmp_path / "tok.json")
    again = ReportTokenizer.load(tmp_path / "tok.json")
    assert again.encode("Thyroid nodule", 16) == tok.encode("Thyroid nodule", 16)

    ds = ReportDataset(data, tok, img_size=16, max_len=12, max_images=2)
    one = ds[1]  # a one-image report repeats its image
    assert one["images"].shape == (2, 1, 16, 16)
    assert abs(float(one["images"][0].mean()) - 30 / 255) < 1e-3 and float((one["images"][0] - one["images"][1]).abs().max()) == 0
    batch = collate_reports([ds[0], ds[1]])
    assert batch["images"].shape == (2, 2, 1, 16, 16) and batch["tokens"].shape == (2, 12)
    assert int(batch["tokens"][1, batch["length"][1]:].abs().sum()) == 0  # padded with PAD = 0
