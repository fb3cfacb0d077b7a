"""Style transfer: losses against NumPy, hybrid == eager, the optimisation."""
import os

import mxnet as mx
import numpy as np
import pytest

from mxgen.errors import MXGenError
from mxgen.models.features import RANDOM_NET, get_feature_net
from mxgen.models.style import TransformerNet
from mxgen.nn.style_loss import StyleLoss, gram_matrix, style_targets
from mxgen.data.images import read_image
from mxgen.stylize import load_content_and_style, stylize_optim
from tests.conftest import EMOJI_SAMPLE

CONTENT = os.path.join(EMOJI_SAMPLE, "emoji_u0030.png")


def _gram_np(feat):
    n, c, h, w = feat.shape
    flat = feat.reshape(n, c, h * w)
    return np.einsum("nik,njk->nij", flat, flat) / (c * h * w)


def _stripes(height, width, period=6):
    """A style image made in the test: diagonal colour stripes."""
    y, x = np.mgrid[:height, :width]
    phase = ((x + y) // period) % 3
    colours = np.array([[0.9, 0.2, 0.1], [0.1, 0.3, 0.9], [0.95, 0.9, 0.2]], dtype=np.float32)
    return colours[phase].transpose(2, 0, 1)[None]


@pytest.fixture(scope="module")
def feature_net():
    return get_feature_net(RANDOM_NET)[0]


def test_gram_matrix_matches_numpy():
    feat = np.random.RandomState(0).randn(2, 5, 4, 3).astype(np.float32)
    np.testing.assert_allclose(gram_matrix(mx.nd, mx.nd.array(feat)).asnumpy(), _gram_np(feat),
                               rtol=1e-5, atol=1e-6)
    sym = gram_matrix(mx.sym, mx.sym.var("x"))             # the same in a graph
    out = sym.eval(x=mx.nd.array(feat))[0].asnumpy()
    np.testing.assert_allclose(out, _gram_np(feat), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("hybrid", [False, True])
def test_losses_match_a_numpy_computation(feature_net, hybrid):
    rng = np.random.RandomState(1)
    image = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    content = rng.uniform(0, 1, (2, 3, 32, 32)).astype(np.float32)
    style = _stripes(40, 48)
    loss = StyleLoss(feature_net, content_weight=2.0, style_weight=3.0, tv_weight=5.0)
    if hybrid:
        loss.hybridize()
    target, grams = style_targets(feature_net, mx.nd.array(content), mx.nd.array(style))
    total, c, s, tv = (v.asscalar() for v in loss(mx.nd.array(image), target, *grams))
    feats = [f.asnumpy() for f in feature_net(mx.nd.array(image))]
    p = feature_net(mx.nd.array(content))[-1].asnumpy()
    ref_c = np.mean([np.mean((feats[-1][i] - p[i]) ** 2) / (np.mean(p[i] ** 2) + 1e-8)
                     for i in range(2)])
    style_feats = [f.asnumpy() for f in feature_net(mx.nd.array(style))[:-1]]
    ref_s = sum(np.mean((_gram_np(f) - _gram_np(a)) ** 2) / (np.mean(_gram_np(a) ** 2) + 1e-8)
                for f, a in zip(feats[:-1], style_feats))
    ref_tv = np.mean(np.diff(image, axis=3) ** 2) + np.mean(np.diff(image, axis=2) ** 2)
    assert c == pytest.approx(ref_c, rel=1e-4)
    assert s == pytest.approx(ref_s, rel=1e-4)
    assert tv == pytest.approx(ref_tv, rel=1e-4)
    assert total == pytest.approx(2 * ref_c + 3 * ref_s + 5 * ref_tv, rel=1e-4)


def test_feature_net_and_transformer_hybrid_equal_eager(feature_net):
    x = mx.nd.random.uniform(shape=(2, 3, 48, 64))
    # the feature net is returned hybridized: compare with the same blocks run eagerly
    hybrid_outs = [o.asnumpy() for o in feature_net(x)]
    feature_net.hybridize(active=False)
    eager_outs = [o.asnumpy() for o in feature_net(x)]
    feature_net.hybridize(static_alloc=True)
    for a, b in zip(hybrid_outs, eager_outs):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
    net = TransformerNet(width=8, residual=2)
    net.initialize(mx.init.Xavier())
    y_eager = net(x).asnumpy()
    net.hybridize(static_alloc=True)
    np.testing.assert_allclose(net(x).asnumpy(), y_eager, rtol=1e-5, atol=1e-5)
    assert y_eager.shape == (2, 3, 48, 64)


def test_random_feature_net_is_the_same_every_time():
    a, _ = get_feature_net(RANDOM_NET)
    b, _ = get_feature_net(RANDOM_NET)
    x = mx.nd.random.uniform(shape=(1, 3, 32, 32))
    for fa, fb in zip(a(x), b(x)):
        np.testing.assert_array_equal(fa.asnumpy(), fb.asnumpy())


@pytest.mark.parametrize("optimizer", ["adam", "lbfgs"])
def test_optimisation_lowers_the_loss_by_a_large_factor(feature_net, optimizer):
    content, _ = read_image(CONTENT, size=48, multiple=4)
    style = _stripes(48, 48)
    _, history = stylize_optim(content, style, feature_net, iterations=40, multiscale=False,
                               optimizer=optimizer, lr=0.05)
    before, after = history[0]["before"], history[0]["after"]
    assert before["content"] == 0.0                     # it starts from the content image
    assert after["total"] < before["total"] / 5, history
    assert after["style"] < before["style"] / 5, history


def test_multiscale_runs_coarse_to_fine(feature_net):
    content = np.random.RandomState(0).uniform(0, 1, (1, 3, 256, 320)).astype(np.float32)
    image, history = stylize_optim(content, _stripes(64, 64), feature_net, iterations=2)
    assert [h["size"] for h in history] == [[128, 160], [256, 320]]
    assert image.shape == (1, 3, 256, 320) and 0 <= image.min() and image.max() <= 1


def test_image_errors_name_the_file(tmp_path):
    with pytest.raises(MXGenError, match="content image not found: .*nope.png"):
        read_image(str(tmp_path / "nope.png"), what="content image")
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image at all")
    with pytest.raises(MXGenError, match="style image .*bad.png cannot be decoded"):
        read_image(str(bad), what="style image")


def test_a_small_style_image_is_upscaled_with_a_warning(tmp_path):
    from PIL import Image
    small = tmp_path / "small.png"
    Image.fromarray((_stripes(20, 20)[0].transpose(1, 2, 0) * 255).astype(np.uint8)).save(small)
    with pytest.warns(UserWarning, match="much smaller than the output"):
        content, style = load_content_and_style(CONTENT, str(small), 72)
    assert min(style.shape[2:]) == min(content.shape[2:])


def test_vgg_without_weights_says_how_to_get_them(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_HOME", str(tmp_path))
    with pytest.raises(MXGenError, match="needs pretrained weights.*pretrained=True.*--vgg-params"):
        get_feature_net("vgg16")


def test_vgg_params_of_another_architecture_are_refused(tmp_path):
    other = TransformerNet(width=4, residual=1)
    other.initialize()
    path = str(tmp_path / "not-vgg.params")
    other.save_parameters(path)
    with pytest.raises(MXGenError, match="does not hold vgg16 weights"):
        get_feature_net("vgg16", params=path)


def test_vgg_params_from_a_file_load_and_run(tmp_path):
    """A VGG-16 weights file in gluoncv's format (random here, made in the
    test: nothing downloads) builds the VGG feature network."""
    import gluoncv
    full = gluoncv.model_zoo.get_model("vgg16", pretrained=False)
    full.initialize(mx.init.Xavier())
    full(mx.nd.zeros((1, 3, 224, 224)))
    path = str(tmp_path / "vgg16-test.params")
    full.save_parameters(path)
    net, description = get_feature_net("vgg16", params=path)
    outs = net(mx.nd.random.uniform(shape=(1, 3, 64, 64)))
    assert [o.shape[1] for o in outs] == [64, 128, 256, 512, 128]
    assert "vgg16 (pretrained" in description and "relu4_3" in description


@pytest.mark.parametrize("shape", [(2, 5, 7, 6), (1, 3, 16, 16)])
def test_instance_norm_matches_mxnets_operator(shape):
    """mxgen's InstanceNorm (moments as matrix products) == MXNet's op,
    forward and gradients, eager and hybridized."""
    from mxnet import autograd

    from mxgen.nn.norm import InstanceNorm
    rng = np.random.RandomState(0)
    x = mx.nd.array(rng.normal(1.5, 2.0, shape).astype(np.float32))
    gamma = mx.nd.array(rng.uniform(0.5, 1.5, shape[1]).astype(np.float32))
    beta = mx.nd.array(rng.normal(size=shape[1]).astype(np.float32))
    head = mx.nd.array(rng.normal(size=shape).astype(np.float32))
    for hybrid in (False, True):
        block = InstanceNorm(shape[1])
        block.initialize()
        block.gamma.set_data(gamma)
        block.beta.set_data(beta)
        if hybrid:
            block.hybridize()
        grads = []
        for fn in (block, lambda v: mx.nd.InstanceNorm(v, gamma, beta, eps=1e-5)):
            v = x.copy()
            v.attach_grad()
            with autograd.record():
                y = fn(v)
            y.backward(head)
            grads.append((y.asnumpy(), v.grad.asnumpy()))
        np.testing.assert_allclose(grads[0][0], grads[1][0], rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(grads[0][1], grads[1][1], rtol=1e-3, atol=1e-3)
