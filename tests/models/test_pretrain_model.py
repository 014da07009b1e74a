"""EchoCarePretrainModel: forward contract, gradients, decoders, channels, sizes, state dict."""

import pytest
import torch

import echocare
from echocare.losses import masked_l1_loss
from echocare.models import EchoCarePretrainModel, token_mask_to_pixels
from echocare.ontology import load_ontology

ONTO = load_ontology()


def _batch(b=2, c=1, h=64, w=64, p=4, seed=0, with_targets=True):
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(b, c, h, w, generator=g)
    mask = (torch.rand(b, h // p, w // p, generator=g) < 0.5).float()
    targets = None
    if with_targets:
        targets = ONTO.encode_batch([["thorax/heart/a4c"], []], [["thorax/heart/a2c"], None])
    return images, mask, targets


def _model(**kw):
    kw.setdefault("img_size", 64)
    kw.setdefault("drop_path_rate", 0.0)  # stochastic depth could skip a block on a tiny batch
    kw.setdefault("decoder_dim", 8)
    return echocare.create_model("echocare_swin_debug", ontology=ONTO, **kw)


@pytest.mark.parametrize(
    "kw",
    [
        dict(decoder="simmim"),
        dict(decoder="progressive", in_chans=3, img_size=(64, 96)),
        dict(decoder="progressive", patch_size=2),
        dict(decoder="simmim", decoder_output="sigmoid"),
        dict(decoder="progressive", decoder_output="sigmoid"),
        dict(decoder="unetr", in_chans=3, img_size=(64, 96)),
        dict(decoder="unetr", patch_size=2, decoder_output="sigmoid"),
    ],
    ids=["simmim", "progressive_rgb_nonsquare", "progressive_patch2", "simmim_linear", "progressive_linear",
         "unetr_rgb_nonsquare", "unetr_patch2_linear"],
)
def test_every_parameter_gets_a_gradient(kw):
    model = _model(**kw)
    c = model.encoder.in_chans
    h, w = model.encoder.patch_embed.img_size
    images, mask, targets = _batch(c=c, h=h, w=w, p=model.patch_size)
    out = model(images, mask, targets)
    assert set(out) == {"loss", "loss_mim", "loss_hie", "recon", "logits"}
    assert out["recon"].shape == images.shape
    if kw.get("decoder_output", "linear") == "sigmoid":
        assert out["recon"].min() >= 0 and out["recon"].max() <= 1
    assert out["logits"].shape == (2, len(ONTO))
    assert out["loss_hie"] > 0
    torch.testing.assert_close(out["loss"], out["loss_mim"] + out["loss_hie"])
    torch.testing.assert_close(
        out["loss_mim"], masked_l1_loss(out["recon"], images, token_mask_to_pixels(mask, model.patch_size))
    )
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.fixture(scope="module")
def simmim_model():
    return _model(decoder="simmim")


@pytest.fixture(scope="module")
def progressive_model():
    return _model(decoder="progressive")


@pytest.fixture(scope="module")
def unetr_model():
    return _model(decoder="unetr")


@pytest.mark.parametrize("decoder", ["simmim", "progressive", "unetr"])
def test_masked_pixels_do_not_leak_into_reconstruction(decoder, request):
    model = request.getfixturevalue(f"{decoder}_model").eval()
    images, mask, _ = _batch()
    pixel_mask = token_mask_to_pixels(mask, model.patch_size)
    altered = images * (1 - pixel_mask) + torch.rand_like(images) * pixel_mask  # change masked pixels only
    with torch.no_grad():
        torch.testing.assert_close(model(images, mask)["recon"], model(altered, mask)["recon"])


def test_without_targets_or_ontology(simmim_model):
    images, mask, _ = _batch()
    with torch.no_grad():
        out = simmim_model(images, mask)
    assert out["loss_hie"].item() == 0.0
    torch.testing.assert_close(out["loss"], out["loss_mim"])
    assert out["logits"].shape == (2, len(ONTO))

    mim_only = echocare.create_model("echocare_swin_debug", img_size=64)
    with torch.no_grad():
        out = mim_only(images, mask)
    assert out["logits"] is None and mim_only.classifier is None
    assert out["loss"].item() == pytest.approx(out["loss_mim"].item())
    with pytest.raises(ValueError, match="no ontology"):
        mim_only(images, mask, torch.zeros(2, len(ONTO)))


def test_hie_weight_and_input_errors(simmim_model):
    model = _model(hie_weight=0.25, depths=(1, 1, 1, 1))
    images, mask, targets = _batch()
    with torch.no_grad():
        out = model(images, mask, targets)
    torch.testing.assert_close(out["loss"], out["loss_mim"] + 0.25 * out["loss_hie"])
    model = simmim_model
    with pytest.raises(ValueError, match="mask must be"):
        model(images, mask[:, :8], targets)
    with pytest.raises(ValueError, match="targets must be"):
        model(images, mask, targets[:, :5])
    with pytest.raises(ValueError, match="unknown decoder"):
        _model(decoder="unet")


def test_state_dict_round_trip(progressive_model):
    a = progressive_model.eval()
    b = _model(decoder="progressive").eval()
    state = a.state_dict()
    assert not any(k.startswith("hierarchy.") for k in state)  # index buffers are not persistent
    assert "encoder.mask_token" in state
    b.load_state_dict(state, strict=True)
    images, mask, targets = _batch()
    with torch.no_grad():
        oa, ob = a(images, mask, targets), b(images, mask, targets)
    torch.testing.assert_close(oa["recon"], ob["recon"])
    torch.testing.assert_close(oa["logits"], ob["logits"])
    assert isinstance(a, EchoCarePretrainModel)
    assert "encoder.mask_token" in a.no_weight_decay()


def test_simmim_head_is_the_1x1_conv_it_stores():
    """The decoder runs its 1x1 conv as a GEMM on NHWC features; output and gradients equal the conv's."""
    from torch.nn import functional as F

    from echocare.models.decoders import SimMIMDecoder

    torch.manual_seed(0)
    dec = SimMIMDecoder(in_features=16, stride=8, out_chans=1, output="sigmoid")
    feat = torch.randn(2, 16, 3, 5, requires_grad=True)
    image = torch.zeros(2, 1, 20, 36)  # odd sizes: the output is cropped to 20 x 36
    out = dec([feat], image)
    ref = torch.sigmoid(F.pixel_shuffle(F.conv2d(feat, dec.proj.weight, dec.proj.bias), 8)[..., :20, :36])
    assert out.shape == (2, 1, 20, 36)
    torch.testing.assert_close(out, ref)
    g_out = torch.autograd.grad(out.square().sum(), (feat, dec.proj.weight))
    g_ref = torch.autograd.grad(ref.square().sum(), (feat, dec.proj.weight))
    for a, b in zip(g_out, g_ref):
        torch.testing.assert_close(a, b)


@pytest.mark.parametrize("decoder", ["simmim", "progressive"])
def test_linear_output_is_the_sigmoid_outputs_logit(decoder):
    """decoder_output='linear' drops only the final sigmoid (SimMIM's head): same weights, recon = logit."""
    torch.manual_seed(0)
    squashed = _model(decoder=decoder, decoder_output="sigmoid").eval()
    raw = _model(decoder=decoder).eval()  # linear: the default
    raw.load_state_dict(squashed.state_dict())
    images, mask, _ = _batch()
    with torch.no_grad():
        a, b = squashed(images, mask)["recon"], raw(images, mask)["recon"]
    torch.testing.assert_close(torch.sigmoid(b), a)
    assert b.min() < 0 or b.max() > 1  # raw values are not squashed into [0, 1]
    with pytest.raises(ValueError, match="decoder output"):
        _model(decoder=decoder, decoder_output="tanh")


def test_normalised_targets_train_every_parameter_and_return_image_space_recon():
    """target_norm_patch: the loss is eq. (1) on per-block normalised pixels; recon is mapped back."""
    from echocare.losses import patch_mean_std

    model = _model(decoder_output="linear", target_norm_patch=8)
    images, mask, targets = _batch()
    out = model(images, mask, targets)
    mean, std = patch_mean_std(images, 8)
    pixel_mask = token_mask_to_pixels(mask, model.patch_size)
    raw = (out["recon"] - mean) / std  # the decoder's output, in normalised units
    torch.testing.assert_close(out["loss_mim"], masked_l1_loss(raw, (images - mean) / std, pixel_mask))
    assert not torch.allclose(out["loss_mim"], masked_l1_loss(out["recon"], images, pixel_mask))
    out["loss"].backward()
    missing = [n for n, p in model.named_parameters() if p.grad is None or not torch.any(p.grad != 0)]
    assert missing == []


@pytest.mark.parametrize("kw", [dict(target_norm_patch=8, decoder_output="sigmoid"), dict(target_norm_patch=1)])
def test_normalised_targets_need_a_linear_output_and_a_real_block(kw):
    with pytest.raises(ValueError, match="target_norm_patch"):
        _model(**kw)
