"""Report metrics: BLEU / METEOR / ROUGE-L from nltk and rouge-score, findings over terms."""

from __future__ import annotations

import pytest

from echocare.metrics import report as rm

REFS = ["the liver is normal in size with a smooth capsule .", "thyroid nodule with clear margin , 5.2 mm ."]


def test_tokenize_words_numbers_and_cjk():
    assert rm.tokenize_report("Thyroid nodule, 5.2 mm.") == ["thyroid", "nodule", "5.2", "mm"]
    assert rm.tokenize_report("肝脏 normal，包膜") == ["肝", "脏", "normal", "包", "膜"]


def test_identical_and_disjoint_reports():
    perfect = rm.report_generation_report(REFS, REFS, terms=["liver", "nodule", "clear margin", "gallbladder"])
    for k in ("bleu_1", "bleu_4", "rouge_l", "meteor_exact_stem", "findings_accuracy", "findings_f1"):
        assert perfect[k] == pytest.approx(1.0, abs=1e-3), k
    wrong = ["spleen unremarkable"] * 2
    assert rm.bleu(wrong, REFS)["bleu_1"] == 0.0 and rm.rouge_l(wrong, REFS) == 0.0
    three = REFS + ["gallbladder wall is thin ."]
    assert rm.cider(three, three) > 1.0 and rm.cider(["spleen unremarkable"] * 3, three) == 0.0
    assert perfect["cider"] > 0 and "cider" not in perfect["unavailable"]
    with pytest.raises(ValueError, match="2 generated reports but 1"):
        rm.bleu(REFS, REFS[:1])


def test_known_values():
    # unigram precision 3/3 with brevity penalty exp(1 - 4/3)
    assert rm.bleu(["liver is normal"], ["the liver is normal"])["bleu_1"] == pytest.approx(0.7165, abs=1e-3)
    # LCS 3 of hyp 3 / ref 4 tokens: F1 = 2 * 1 * 0.75 / 1.75
    assert rm.rouge_l(["liver is normal"], ["the liver is normal"]) == pytest.approx(6 / 7)
    # stems match only in the exact+stem METEOR ("nodules" ~ "nodule")
    assert rm.meteor(["thyroid nodules"], ["thyroid nodule"]) > rm.meteor(["thyroid cysts"], ["thyroid nodule"])


def test_findings_micro_scores_and_default_terms():
    hyps = ["liver normal , no nodule", "gallbladder normal"]
    refs = ["liver normal", "gallbladder wall thick , nodule seen"]
    got = rm.findings_scores(hyps, refs, ["liver", "nodule", "gallbladder", "wall thick"])
    # pairs: r1 = (1,1,0,0) vs (1,0,0,0); r2 = (0,0,1,0) vs (0,1,1,1): tp 2, fp 1, fn 2, tn 3
    assert got["findings_accuracy"] == pytest.approx(5 / 8)
    assert got["findings_precision"] == pytest.approx(2 / 3) and got["findings_recall"] == pytest.approx(0.5)
    assert got["findings_f1"] == pytest.approx(4 / 7)
    corpus = ["liver normal , capsule smooth", "liver cyst , capsule smooth", "liver nodule 5 mm"]
    terms = rm.default_findings_terms(corpus, k=3)
    assert terms == ["capsule", "capsule smooth", "smooth"]  # 'liver' is in every report: no information
    with pytest.raises(ValueError, match="without any token"):
        rm.findings_labels(corpus, [", ."])


def test_meteor_is_null_with_reason_without_wordnet(tmp_path):
    rep = rm.report_generation_report(REFS, REFS, wordnet_dir=tmp_path)
    assert rep["meteor"] is None and "WordNet not found" in rep["unavailable"]["meteor"]
    assert rep["meteor_exact_stem"] == pytest.approx(1.0, abs=1e-3)
    assert rep["findings_terms_source"].startswith("top 20 of the reference") and rep["findings_terms"]
