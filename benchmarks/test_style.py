"""Style transfer: optimisation iterations/s and feed-forward images/s,
hybridized vs eager (the offline feature network, random_multiscale_v1)."""
import mxnet as mx
import numpy as np
from mxnet import autograd

from mxgen.models.features import RANDOM_NET, get_feature_net
from mxgen.models.style import TransformerNet
from mxgen.nn.style_loss import StyleLoss, style_targets
from mxgen.stylize import PixelAdam

from conftest import compare, record_compute


def _images(size, seed=0):
    rng = np.random.RandomState(seed)
    content = mx.nd.array(rng.uniform(0, 1, (1, 3, size, size)).astype(np.float32))
    style = mx.nd.array(rng.uniform(0, 1, (1, 3, size, size)).astype(np.float32))
    return content, style


def _optim_iteration(size, hybrid):
    """One iteration of ``mxgen stylize --method optim`` (stylize_optim's own
    PixelAdam step): feature net forward + backward to the image, the
    losses, the Adam update and the clip."""
    net, _ = get_feature_net(RANDOM_NET)
    if not hybrid:
        net.hybridize(active=False)
    content, style = _images(size)
    loss = StyleLoss(net)
    if hybrid:
        loss.hybridize(static_alloc=True)
    target, grams = style_targets(net, content, style)
    return PixelAdam(content, lambda x: loss(x, target, *grams), 0.02).step


def test_stylize_optim(benchmark, quick):
    size = 128 if quick else 256
    rounds, warmup = (3, 1) if quick else (10, 2)
    compare(benchmark, _optim_iteration(size, True), {"eager": _optim_iteration(size, False)},
            1, "iterations", rounds, warmup,
            {"size": "%dx%d" % (size, size), "feature_net": RANDOM_NET, "optimizer": "adam"})


def _transform(size, hybrid, width=32):
    net = TransformerNet(width=width)
    net.initialize(mx.init.Xavier())
    if hybrid:
        net.hybridize(static_alloc=True)
    x = mx.nd.random.uniform(shape=(1, 3, size, size))

    def run():
        with autograd.predict_mode():
            return net(x)
    run.net = net
    return run


def test_stylize_net(benchmark, quick):
    size = 256 if quick else 512
    rounds, warmup = (3, 1) if quick else (8, 2)
    candidate = _transform(size, True)
    cand, _ = compare(benchmark, candidate, {"eager": _transform(size, False)}, 1, "images",
                      rounds, warmup, {"size": "%dx%d" % (size, size),
                                       "network": "TransformerNet width 32, 5 residual blocks"})
    flops = candidate.net.flops_per_pixel() * size * size
    benchmark.extra_info["gflop_per_image"] = round(flops / 1e9, 1)
    record_compute(benchmark, cand, flops)
