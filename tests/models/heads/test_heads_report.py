"""Report head: visual memory shapes, teacher forcing, greedy vs beam decoding, learns a template corpus."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from echocare.data.labeled.reports import ReportTokenizer
from echocare.data.phantom import phantom_image
from echocare.metrics.report import bleu
from echocare.models import create_encoder
from echocare.models.heads import FinetuneModel
from echocare.models.heads.report import ReportHead, sincos_2d

TEMPLATES = {
    "a4c": "four chamber view of the heart , normal ventricles .",
    "thyroid": "thyroid gland shows a hypoechoic nodule with clear margin .",
    "fetal_head": "fetal head biometry is normal , skull outline intact .",
}


def tiny_model(vocab: int, max_len: int = 32) -> FinetuneModel:
    torch.manual_seed(0)
    enc = create_encoder("echocare_swin_debug", img_size=64)
    head = ReportHead(enc.feature_info, vocab, d_model=64, num_heads=4, num_layers=2, dropout=0.0, max_len=max_len)
    return FinetuneModel(enc, head)


def sequence_logprob(head: ReportHead, memory: torch.Tensor, ids: list[int]) -> float:
    seq = torch.tensor([[head.bos_id, *ids, head.eos_id]])
    logp = head.logits(memory, seq[:, :-1]).log_softmax(-1)  # (1, L-1, V)
    return float(logp[0].gather(1, seq[0, 1:, None]).sum())


def test_shapes_loss_and_decoding_contracts():
    model = tiny_model(vocab=30, max_len=12)
    images = torch.rand(3, 2, 1, 64, 64)
    out = model(images)
    assert out["memory"].shape == (3, 2 * (1 + 2 * 2), 64)  # 2 images x (global + (64/32)^2 tokens)
    assert model(images[:, 0])["memory"].shape == (3, 5, 64)  # one image per report
    tokens = torch.tensor([[1, 5, 6, 2, 0, 0], [1, 7, 2, 0, 0, 0], [1, 8, 9, 10, 11, 2]])
    res = model.loss(out, {"tokens": tokens})
    assert res["loss"].ndim == 0 and 0 <= float(res["logs"]["token_acc"]) <= 1
    res["loss"].backward()
    for name, p in model.head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    model.eval()
    mem = model(images)["memory"]
    greedy = model.head.generate(mem, beam_size=1, max_len=10)
    assert len(greedy) == 3 and all(len(g) <= 9 and 2 not in g and 0 not in g for g in greedy)
    beam = model.head.generate(mem, beam_size=4, max_len=10, length_penalty=0.0)
    for i in range(3):  # with no length normalisation, beam search never scores below greedy
        m = mem[i : i + 1]
        if len(greedy[i]) < 9 and len(beam[i]) < 9:  # both finished with EOS
            assert sequence_logprob(model.head, m, beam[i]) >= sequence_logprob(model.head, m, greedy[i]) - 1e-4
    with pytest.raises(ValueError, match="max_images"):
        model(torch.rand(1, 3, 1, 64, 64))
    with pytest.raises(ValueError, match="max_len"):
        model.head.logits(mem, torch.ones(3, 13, dtype=torch.long))
    assert sincos_2d(2, 3, 8).shape == (6, 8)


def test_learns_a_template_corpus_far_above_chance():
    rng = np.random.default_rng(0)
    kinds = list(TEMPLATES) * 4
    images = torch.stack([
        torch.stack([torch.from_numpy(phantom_image(rng, 64, k)[0] / 255.0).float()[None] for _ in range(2)])
        for k in kinds
    ])  # (12, 2, 1, 64, 64)
    texts = [TEMPLATES[k] for k in kinds]
    tok = ReportTokenizer.train(texts, vocab_size=120, min_frequency=1)
    tokens = torch.zeros(len(texts), 32, dtype=torch.long)
    for i, t in enumerate(texts):
        ids = tok.encode(t, 32)
        tokens[i, : len(ids)] = torch.tensor(ids)
    model = tiny_model(tok.vocab_size)
    model.freeze_backbone()  # random-init encoder as a fixed feature extractor: the decoder must read the images
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    for _ in range(70):
        res = model.loss(model(images), {"tokens": tokens})
        opt.zero_grad()
        res["loss"].backward()
        opt.step()
    model.eval()
    generated = [tok.decode(ids) for ids in model.predict(images)["tokens"]]
    # chance: the best a model that ignores the images can do is one template for every report
    chance = max(bleu([t] * len(texts), texts)["bleu_1"] for t in TEMPLATES.values())
    got = bleu(generated, texts)["bleu_1"]
    assert got > 0.8 and got > chance + 0.3, (got, chance, generated[:3])
    beams = [tok.decode(ids) for ids in model.head.predict(model(images), beam_size=3)["tokens"]]
    assert bleu(beams, texts)["bleu_1"] > chance + 0.3
