"""Spectral norm, the weight EMA and the adversarial losses, against NumPy."""
import mxnet as mx
import numpy as np
import pytest

from mxgen.nn.ema import WeightEMA, standing_statistics
from mxgen.nn.gan_loss import LOSSES, d_loss, g_loss
from mxgen.nn.spectral import SNConv2D, power_iteration


def _sigma_max(weight):
    return np.linalg.svd(weight.reshape(weight.shape[0], -1), compute_uv=False)[0]


@pytest.mark.parametrize("shape", [(16, 3, 4, 4), (1, 32, 4, 4), (64, 32, 4, 4)])
def test_spectral_norm_scales_the_largest_singular_value_to_one(shape):
    out, inp, k, _ = shape
    mx.random.seed(7)
    layer = SNConv2D(out, k, 2, 1, use_bias=False, in_channels=inp)
    layer.initialize(mx.init.Normal(0.5))
    # a weight whose singular values fall off (3, 2.4, 1.9, ...), as trained
    # weights' do; a random matrix's top ones are nearly equal, and power
    # iteration needs hundreds of steps to tell them apart
    rng = np.random.RandomState(1)
    left, _ = np.linalg.qr(rng.normal(size=(out, out)))
    right, _ = np.linalg.qr(rng.normal(size=(inp * k * k, out)))
    values = 3.0 * 0.8 ** np.arange(out)
    layer.weight.set_data(mx.nd.array(((left * values) @ right.T).reshape(shape)))
    assert _sigma_max(layer.weight.data().asnumpy()) == pytest.approx(3.0, rel=1e-5)
    for _ in range(20):       # u's error shrinks by (0.8)^2 a step
        power_iteration([layer], [mx.cpu()])
    normalised = layer.normalised_weight().asnumpy()
    # sigma is estimated from below: sigma_max(W / sigma) >= 1
    assert 1 - 1e-5 < _sigma_max(normalised) < 1 + 1e-3, _sigma_max(normalised)
    # the layer computes with exactly that weight, hybridized or not
    x = mx.nd.random.normal(shape=(2, inp, 8, 8))
    expected = mx.nd.Convolution(x, mx.nd.array(normalised), kernel=(k, k), stride=(2, 2),
                                 pad=(1, 1), num_filter=out, no_bias=True).asnumpy()
    eager = layer(x).asnumpy()
    layer.hybridize(static_alloc=True)
    np.testing.assert_allclose(eager, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(layer(x).asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_spectral_norm_of_a_random_weight_converges():
    mx.random.seed(7)
    layer = SNConv2D(64, 4, 2, 1, use_bias=False, in_channels=32)
    layer.initialize(mx.init.Normal(0.5))
    errors = []
    for steps in (10, 90, 400):
        for _ in range(steps):
            power_iteration([layer], [mx.cpu()])
        errors.append(_sigma_max(layer.normalised_weight().asnumpy()) - 1)
    assert errors[0] >= errors[1] >= errors[2] > -1e-5 and errors[2] < 1e-3, errors


def test_spectral_norm_gradient_is_that_of_w_over_sigma_with_u_v_held():
    """d/dW of sum(conv(x, W / sigma(W))) with sigma = |W v|, v fixed: checked
    against a central difference in one weight."""
    layer = SNConv2D(4, 3, 1, 1, use_bias=False, in_channels=2)
    layer.initialize(mx.init.Normal(0.3))
    for _ in range(30):
        power_iteration([layer], [mx.cpu()])
    x = mx.nd.random.normal(shape=(2, 2, 5, 5))
    with mx.autograd.record():
        y = layer(x).sum()
    y.backward()
    grad = layer.weight.grad().asnumpy()
    w0 = layer.weight.data().asnumpy().copy()
    u = layer.sn_u.data().copy()
    h = 1e-3
    for index in [(0, 0, 0, 0), (3, 1, 2, 1), (1, 1, 1, 1)]:
        values = []
        for sign in (1, -1):
            w = w0.copy()
            w[index] += sign * h
            layer.weight.set_data(mx.nd.array(w))
            layer.sn_u.set_data(u)          # the same u: v follows W but is held in the graph
            values.append(float(layer(x).sum().asscalar()))
        numeric = (values[0] - values[1]) / (2 * h)
        # v = normalise(W^T u) moves with W here but carries no gradient; at
        # the converged u that movement is second order
        assert abs(numeric - grad[index]) < 2e-2 * (abs(numeric) + 1e-2), (index, numeric,
                                                                           grad[index])


def test_ema_matches_the_closed_form():
    """After T updates with decays d_t: e_T = prod(d) e_0 + sum_t (1 - d_t)
    prod_{s>t} d_s w_t (float64 NumPy vs the device arithmetic)."""
    src = mx.gluon.nn.Dense(3, in_units=4)
    src.initialize(mx.init.Normal(1.0))
    shadow = mx.gluon.nn.Dense(3, in_units=4, prefix=src.prefix)
    ema = WeightEMA(src, shadow, 0.9, mx.cpu())
    e0 = src.weight.data().asnumpy().astype(np.float64)
    rng = np.random.RandomState(3)
    ws, decays = [], []
    for t in (1, 2, 3, 100, 101, 102):        # decays 2/11, 3/12, 4/13, then 0.9
        w = rng.normal(size=(3, 4))
        src.weight.set_data(mx.nd.array(w))
        ema.update(t)
        ws.append(w)
        decays.append(ema.decay_at(t))
    assert decays[0] == pytest.approx(2 / 11) and decays[-1] == 0.9     # warm-up, then 0.9
    expected = np.prod(decays) * e0
    for t, w in enumerate(ws):
        expected += (1 - decays[t]) * np.prod(decays[t + 1:]) * w
    np.testing.assert_allclose(shadow.weight.data().asnumpy(), expected, rtol=1e-5, atol=1e-6)


def test_ema_copies_the_statistics_that_are_not_trained():
    src = mx.gluon.nn.BatchNorm(in_channels=2)
    src.initialize()
    shadow = mx.gluon.nn.BatchNorm(in_channels=2, prefix=src.prefix)
    ema = WeightEMA(src, shadow, 0.99, mx.cpu())
    src.running_mean.set_data(mx.nd.array([3.0, -1.0]))
    ema.update(100)
    np.testing.assert_array_equal(shadow.running_mean.data().asnumpy(), [3.0, -1.0])


def test_standing_statistics_are_the_networks_own():
    """Every BatchNorm gets the mean over the batches of the batch statistics
    it sees in training mode (later layers see earlier ones normalised by
    their batch statistics), whatever it held before; the network stays
    hybridized."""
    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Dense(4, in_units=3), mx.gluon.nn.BatchNorm(in_channels=4),
            mx.gluon.nn.Activation("relu"), mx.gluon.nn.Dense(2, in_units=4),
            mx.gluon.nn.BatchNorm(in_channels=2))
    net.initialize(mx.init.Normal(1.0))
    net.hybridize(static_alloc=True)
    rng = np.random.RandomState(1)
    batches = [rng.normal(1.0, 2.0, size=(16, 3)) for _ in range(3)]
    for bn in (net[1], net[4]):
        bn.running_mean.set_data(mx.nd.full(bn.running_mean.shape, 7.0))
    assert standing_statistics(net, [mx.nd.array(b) for b in batches]) == 2
    w1, b1 = net[0].weight.data().asnumpy(), net[0].bias.data().asnumpy()
    w2, b2 = net[3].weight.data().asnumpy(), net[3].bias.data().asnumpy()
    g, beta = net[1].gamma.data().asnumpy(), net[1].beta.data().asnumpy()
    stats = [[], []]
    for x in batches:
        h = x @ w1.T + b1
        stats[0].append((h.mean(0), h.var(0)))
        h = np.maximum(g * (h - h.mean(0)) / np.sqrt(h.var(0) + 1e-5) + beta, 0) @ w2.T + b2
        stats[1].append((h.mean(0), h.var(0)))
    for bn, got in zip((net[1], net[4]), stats):
        np.testing.assert_allclose(bn.running_mean.data().asnumpy(),
                                   np.mean([m for m, _ in got], 0), rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(bn.running_var.data().asnumpy(),
                                   np.mean([v for _, v in got], 0), rtol=1e-4, atol=1e-5)
    assert net._active                              # hybridized again
    net(mx.nd.array(batches[0]))
    assert net._cached_op is not None


def test_ema_statistics_follow_the_averaged_weights():
    """The shadow's refreshed statistics are those of its own (averaged)
    weights, not the copied ones of the source."""
    src = mx.gluon.nn.HybridSequential(prefix="g_")
    with src.name_scope():
        src.add(mx.gluon.nn.Dense(4, in_units=3), mx.gluon.nn.BatchNorm(in_channels=4))
    src.initialize(mx.init.Normal(1.0))
    shadow = mx.gluon.nn.HybridSequential(prefix="g_")
    with shadow.name_scope():
        shadow.add(mx.gluon.nn.Dense(4, in_units=3), mx.gluon.nn.BatchNorm(in_channels=4))
    ema = WeightEMA(src, shadow, 0.5, mx.cpu())
    src[0].weight.set_data(src[0].weight.data() * 3)
    ema.update(100)                                # shadow weight = 2x the original
    x = np.random.RandomState(2).normal(size=(32, 3))
    assert ema.refresh_statistics([mx.nd.array(x)]) == 1
    h = x @ shadow[0].weight.data().asnumpy().T + shadow[0].bias.data().asnumpy()
    np.testing.assert_allclose(shadow[1].running_var.data().asnumpy(), h.var(0), rtol=1e-4)


def _np_softplus(x):
    return np.log1p(np.exp(-np.abs(x))) + np.maximum(x, 0)


@pytest.mark.parametrize("kind", LOSSES)
def test_adversarial_losses_match_numpy(kind):
    rng = np.random.RandomState(0)
    real, fake = rng.normal(0, 3, 50), rng.normal(0, 3, 50)
    expected_d = {"bce": _np_softplus(-real) + _np_softplus(fake),
                  "nonsat": _np_softplus(-real) + _np_softplus(fake),
                  "hinge": np.maximum(0, 1 - real) + np.maximum(0, 1 + fake)}[kind]
    expected_g = {"bce": _np_softplus(-fake), "nonsat": _np_softplus(-fake),
                  "hinge": -fake}[kind]
    got_d = d_loss(mx.nd, kind, mx.nd.array(real), mx.nd.array(fake)).asnumpy()
    got_g = g_loss(mx.nd, kind, mx.nd.array(fake)).asnumpy()
    np.testing.assert_allclose(got_d, expected_d, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(got_g, expected_g, rtol=1e-5, atol=1e-6)


def test_unknown_loss_is_refused():
    with pytest.raises(ValueError, match="unknown GAN loss 'wgan'"):
        d_loss(mx.nd, "wgan", mx.nd.zeros(1), mx.nd.zeros(1))
